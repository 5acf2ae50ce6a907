//! The event XML parser (DOCTYPE and entity refusal included) on arbitrary text: no panic; an
//! event it accepts renders back to XML that parses again to the same event.
#![no_main]

use libfuzzer_sys::fuzz_target;
use scrm_wecom::CallbackEvent;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(event) = CallbackEvent::from_xml(text) {
        let again = CallbackEvent::from_xml(&event.to_xml()).expect("rendered XML parses");
        assert_eq!(again.dedupe_key(), event.dedupe_key(), "round trip");
    }
});
