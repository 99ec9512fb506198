use super::*;

#[test]
fn origins_are_checked() {
    for good in [
        "*",
        "null",
        "http://localhost:8080",
        "https://app.example.com/",
        "capacitor://localhost",
    ] {
        assert!(is_origin(good), "{good}");
    }
    for bad in [
        "",
        "localhost:8080",
        "http://",
        "http://a/b",
        "not an origin",
        "http://a b",
    ] {
        assert!(!is_origin(bad), "{bad}");
    }
}

/// The flags' defaults, `Limits::default` and `with_database` are the same settings.
#[test]
fn defaults_agree() {
    use clap::{Args, Command, FromArgMatches};
    // Ignore the environment of the machine the test runs on.
    let command =
        Settings::augment_args(Command::new("hub")).mut_args(|a| a.env(None::<&'static str>));
    let parsed = Settings::from_arg_matches(&command.get_matches_from(["hub"])).unwrap();
    assert_eq!(
        format!("{parsed:?}"),
        format!("{:?}", Settings::with_database(DEFAULT_DATABASE_URL))
    );
}

#[test]
fn bad_values_name_their_variable() {
    use clap::{Args, Command, FromArgMatches};
    let command = Settings::augment_args(Command::new("hub"));
    let parse = |args: &[&str]| {
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        let error = command
            .clone()
            .try_get_matches_from(&args)
            .and_then(|m| Settings::from_arg_matches(&m))
            .unwrap_err();
        describe_invalid_value(&error, &command, &args)
    };
    assert_eq!(
        parse(&["hub", "--addr", "abc"]).unwrap(),
        "--addr: invalid socket address \"abc\" (expected IP:PORT, e.g. 127.0.0.1:8080)"
    );
    assert_eq!(
        parse(&["hub", "--max-body-bytes=x"]).unwrap(),
        "--max-body-bytes: invalid number \"x\" (invalid digit found in string)"
    );
    assert_eq!(parse(&["hub", "--nope"]), None);
    assert_eq!(
        find_env(&command, "max-body-bytes").as_deref(),
        Some("EVENTIDE_MAX_BODY_BYTES")
    );
}

#[test]
fn a_statement_timeout_too_short_to_answer_anything_is_refused() {
    let mut settings = Settings::with_database(DEFAULT_DATABASE_URL);
    assert_eq!(
        settings.db_statement_timeout(),
        Duration::from_millis(4_000)
    );
    assert!(
        settings.db_statement_timeout() < Delivery::default().recovery_deadline() / 2,
        "a join must have time to retry a read within the recovery deadline"
    );
    settings.db_statement_timeout_ms = 99;
    assert_eq!(
        settings.validate().unwrap_err(),
        "EVENTIDE_DB_STATEMENT_TIMEOUT_MS: must be at least 100, got 99"
    );
    settings.db_statement_timeout_ms = 100;
    assert_eq!(settings.validate(), Ok(()));
}

#[test]
fn one_redis_or_a_redis_cluster_not_both() {
    let mut settings = Settings::with_database(DEFAULT_DATABASE_URL);
    assert!(!settings.clustered());
    settings.redis_cluster_urls = vec![
        "redis://127.0.0.1:7000".into(),
        " redis://127.0.0.1:7001 ".into(),
        String::new(),
    ];
    assert_eq!(
        settings.redis_seeds(),
        ["redis://127.0.0.1:7000", "redis://127.0.0.1:7001"]
    );
    assert!(settings.clustered());
    assert_eq!(settings.validate(), Ok(()));
    settings.redis_url = Some("redis://127.0.0.1:6379".into());
    let error = settings.validate().unwrap_err();
    assert!(
        error.starts_with("EVENTIDE_REDIS_URL and EVENTIDE_REDIS_CLUSTER_URLS: set one"),
        "{error}"
    );
    // An empty variable is as good as none.
    settings.redis_cluster_urls = vec![String::new()];
    assert_eq!(settings.validate(), Ok(()));
}
