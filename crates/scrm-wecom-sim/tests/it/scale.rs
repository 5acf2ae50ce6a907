use std::time::Instant;

use scrm_wecom_sim::company::generate;
use scrm_wecom_sim::config::CompanySize;

/// A million customers generate, and the same seed gives the same company. Two generations
/// take about 25 s in a debug build (0.3 s each in release), so ignored by default:
/// `cargo test -p scrm-wecom-sim --release -- --ignored a_million`.
#[test]
#[ignore = "takes > 20 s in debug builds"]
fn a_million_customers_generate_deterministically() {
    let size = CompanySize {
        customers: 1_000_000,
        staff: 2000,
        departments: 60,
        group_chats: 2000,
        ..CompanySize::default()
    };
    let start = Instant::now();
    let a = generate(7, &size);
    let took = start.elapsed();
    eprintln!(
        "generated 1,000,000 customers, {} follows in {took:?}",
        a.follow_count()
    );
    assert_eq!(a.customers.len(), 1_000_000);
    let b = generate(7, &size);
    for i in [0u32, 1, 499_999, 999_999] {
        assert_eq!(a.external_userid(i), b.external_userid(i));
        assert_eq!(a.customer_name(i), b.customer_name(i));
        let fa: Vec<_> = a
            .follows_of(i)
            .map(|(_, f)| (f.staff, f.createtime, f.tags.clone()))
            .collect();
        let fb: Vec<_> = b
            .follows_of(i)
            .map(|(_, f)| (f.staff, f.createtime, f.tags.clone()))
            .collect();
        assert_eq!(fa, fb);
        assert_eq!(a.customer_by_id(&a.external_userid(i)), Some(i));
    }
    assert_eq!(a.follow_count(), b.follow_count());
}

#[test]
fn fifty_thousand_customers_generate_quickly_and_deterministically() {
    let size = CompanySize {
        customers: 50_000,
        staff: 300,
        ..CompanySize::default()
    };
    let a = generate(3, &size);
    let b = generate(3, &size);
    assert_eq!(a.follow_count(), b.follow_count());
    assert_eq!(a.external_userid(49_999), b.external_userid(49_999));
    let avg = a.follow_count() as f64 / 50_000.0;
    assert!((1.15..1.45).contains(&avg), "average follows {avg}");
}
