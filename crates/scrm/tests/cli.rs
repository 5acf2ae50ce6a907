//! The `scrm` command line, run as a user would run it.

use std::process::Command;

fn scrm(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let dir = std::env::temp_dir().join(format!("scrm-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_scrm"));
    cmd.args(args)
        .current_dir(&dir)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run scrm");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

#[test]
fn config_prints_the_effective_settings_with_secrets_masked() {
    let (code, out, _) = scrm(
        &["config"],
        &[
            (
                "DATABASE_URL",
                "postgres://scrm:hunter2@db.internal:5432/scrm",
            ),
            ("SCRM_ADMIN_PASSWORD", "correct-horse"),
            ("REDIS_HOST", "cache"),
            ("REDIS_PASSWORD", "redis-secret"),
        ],
    );
    assert_eq!(code, 0);
    assert!(out.contains("db.internal"), "{out}");
    assert!(out.contains("postgres"), "{out}");
    assert!(out.contains("cache:6379"), "{out}");
    for secret in ["hunter2", "correct-horse", "redis-secret"] {
        assert!(!out.contains(secret), "{secret} leaked: {out}");
    }
}

#[test]
fn a_bad_setting_stops_startup_naming_the_key() {
    let (code, _, err) = scrm(&["config"], &[("PORT", "seventy")]);
    assert_eq!(code, 2);
    assert!(err.contains("PORT"), "{err}");
    let (code, _, err) = scrm(&["serve"], &[("DATABASE_URL", "oracle://nowhere")]);
    assert_eq!(code, 2);
    assert!(err.contains("DATABASE_URL"), "{err}");
}

#[test]
fn users_are_created_listed_and_reset_from_the_command_line() {
    let db = std::env::temp_dir().join(format!("scrm-cli-users-{}.db", std::process::id()));
    let url = format!("sqlite://{}", db.display());
    let env = [("DATABASE_URL", url.as_str())];
    let (code, out, err) = scrm(
        &["user", "create", "--admin", "--password", "admin-password"],
        &env,
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("created user admin"), "{out}");
    let (code, out, _) = scrm(
        &["user", "create", "--username", "olga", "--role", "viewer"],
        &env,
    );
    assert_eq!(code, 0);
    assert!(
        out.contains("password: "),
        "a generated password is printed once: {out}"
    );
    let (code, _, err) = scrm(
        &["user", "create", "--admin", "--password", "admin-password"],
        &env,
    );
    assert_ne!(code, 0);
    assert!(err.contains("already exists"), "{err}");
    let (_, out, _) = scrm(&["user", "list"], &env);
    assert!(
        out.contains("admin") && out.contains("olga") && out.contains("viewer"),
        "{out}"
    );
    let (code, out, _) = scrm(
        &[
            "user",
            "reset-password",
            "--username",
            "olga",
            "--password",
            "another-password",
        ],
        &env,
    );
    assert_eq!(code, 0, "{out}");
    let _ = std::fs::remove_file(db);
}

#[test]
fn callback_decrypt_prints_the_plaintext_or_the_failed_check() {
    // API-FACTS §10.1 vector A: the official sample's URL verification.
    let args = [
        "callback",
        "decrypt",
        "--token",
        "QDG6eK",
        "--aes-key",
        "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C",
        "--receive-id",
        "wx5823bf96d3bd56c7",
        "--signature",
        "5c45ff5e21c57e6ad56bac8758b79b1d9ac89fd3",
        "--timestamp",
        "1409659589",
        "--nonce",
        "263014780",
        "--echostr",
        "P9nAzCzyDtyTWESHep1vC5X9xho/qYX3Zpb4yKa9SKld1DsH3Iyt3tP3zNdtp+4RPcs8TgAE7OaBO+FZXvnaqQ==",
    ];
    let (code, out, err) = scrm(&args, &[]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.trim(), "1616140317555161061");

    let mut bad_signature = args;
    bad_signature[9] = "0000000000000000000000000000000000000000";
    let (code, _, err) = scrm(&bad_signature, &[]);
    assert_ne!(code, 0);
    assert!(err.contains("check `signature` failed"), "{err}");

    let mut other_corp = args;
    other_corp[7] = "ww-someone-else";
    let (code, _, err) = scrm(&other_corp, &[]);
    assert_ne!(code, 0);
    assert!(err.contains("check `receive id` failed"), "{err}");
}
