//! Client profiles (`~/.config/portcullis/config.toml`): a profile's server and token files
//! stand in for the connection flags; flags and the environment win over it.

use crate::support::{Server, admin_token, bin, generated_and_imported, path};
use std::path::Path;
use std::process::Output;

/// The binary with the profile file `file` and `args`.
fn with_profiles(file: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    bin()
        .env("PORTCULLIS_PROFILES_FILE", file)
        .envs(env.iter().copied())
        .args(args)
        .output()
        .unwrap()
}

fn stdout(output: &Output) -> String {
    assert!(output.status.success(), "{output:?}");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    assert!(!output.status.success(), "{output:?}");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn a_profile_names_the_server_and_the_token_files() {
    let root = tempfile::tempdir().unwrap();
    let (_, data) = generated_and_imported(root.path(), &["--preset", "small", "--seed", "3"]);
    let token = admin_token(&data, "u0000001");
    let decision_secret = "a-long-random-decision-secret";
    let config = root.path().join("config");
    std::fs::create_dir(&config).unwrap();
    std::fs::write(config.join("admin.token"), format!("{token}\n")).unwrap();
    std::fs::write(config.join("decision.token"), decision_secret).unwrap();
    let decision_file = config.join("decision.token");
    let server = Server::start_with(&data, &["--decision-token-file", path(&decision_file)]);
    let file = config.join("config.toml");
    std::fs::write(
        &file,
        format!(
            "profile = \"local\"\n\n\
             [profiles.local]\n\
             server = \"{}\"\n\
             token-file = \"admin.token\"\n\
             decision-token-file = \"decision.token\"\n\n\
             [profiles.elsewhere]\n\
             server = \"http://127.0.0.1:9\"\n\
             token-file = \"admin.token\"\n",
            server.addr
        ),
    )
    .unwrap();

    // The file's default profile: no connection flags at all, for admin, check and policies.
    let whoami = stdout(&with_profiles(&file, &["admin", "whoami"], &[]));
    assert!(whoami.contains("u0000001"), "{whoami}");
    let answer = stdout(&with_profiles(
        &file,
        &[
            "check",
            "--user",
            "u0000001",
            "--connector",
            "github",
            "--tool",
            "create_issue",
        ],
        &[],
    ));
    assert!(answer.contains("reason"), "{answer}");
    let exported = root.path().join("exported");
    stdout(&with_profiles(
        &file,
        &["policies", "export", path(&exported)],
        &[],
    ));
    assert!(exported.join("policies.json").exists());

    // Another profile by flag or environment: its server is the one tried.
    for (args, env) in [
        (&["admin", "--profile", "elsewhere", "whoami"][..], &[][..]),
        (
            &["admin", "whoami"][..],
            &[("PORTCULLIS_PROFILE", "elsewhere")][..],
        ),
    ] {
        let refused = stderr(&with_profiles(&file, args, env));
        assert!(refused.contains("127.0.0.1:9"), "{refused}");
    }
    // A flag wins over the profile; so does the environment, and a token given another way
    // wins over the profile's token file.
    let refused = stderr(&with_profiles(
        &file,
        &["admin", "--server", "http://127.0.0.1:9", "whoami"],
        &[],
    ));
    assert!(refused.contains("127.0.0.1:9"), "{refused}");
    let refused = stderr(&with_profiles(
        &file,
        &["admin", "whoami"],
        &[("PORTCULLIS_TOKEN", "pcl_not_a_real_token")],
    ));
    assert!(refused.contains("unauthenticated"), "{refused}");

    // An unknown profile is named with the ones there are.
    let refused = stderr(&with_profiles(
        &file,
        &["admin", "--profile", "prod", "whoami"],
        &[],
    ));
    assert!(
        refused.contains("no profile `prod`") && refused.contains("`elsewhere`, `local`"),
        "{refused}"
    );
    // `portcullis profiles` lists them, the one in use marked.
    let listed = stdout(&with_profiles(&file, &["profiles"], &[]));
    assert!(listed.contains("* local"), "{listed}");
    assert!(
        listed.contains("elsewhere           http://127.0.0.1:9"),
        "{listed}"
    );
    // As JSON: each profile's settings, paths resolved from the file's directory; `--profile`
    // names the one in use.
    let listed: serde_json::Value = serde_json::from_str(&stdout(&with_profiles(
        &file,
        &["profiles", "--json", "--profile", "elsewhere"],
        &[],
    )))
    .unwrap();
    assert_eq!(listed["file"], path(&file), "{listed}");
    assert_eq!(listed["current"], "elsewhere", "{listed}");
    let named = |name: &str| {
        listed["profiles"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .unwrap_or_else(|| panic!("no {name} in {listed}"))
            .clone()
    };
    let elsewhere = named("elsewhere");
    assert_eq!(elsewhere["name"], "elsewhere", "{listed}");
    assert_eq!(elsewhere["current"], true, "{listed}");
    assert_eq!(
        elsewhere["settings"],
        serde_json::json!({
            "server": "http://127.0.0.1:9",
            "token-file": path(&config.join("admin.token")),
        }),
        "{listed}"
    );
    let local = named("local");
    assert_eq!(
        (&local["name"], &local["current"]),
        (&"local".into(), &false.into())
    );
    assert_eq!(
        local["settings"]["server"],
        server.addr.as_str(),
        "{listed}"
    );
    let none = root.path().join("none.toml");
    let listed: serde_json::Value =
        serde_json::from_str(&stdout(&with_profiles(&none, &["profiles", "--json"], &[]))).unwrap();
    assert_eq!(
        listed,
        serde_json::json!({"file": path(&none), "exists": false, "current": null, "profiles": []})
    );
}

#[test]
fn a_profile_file_that_does_not_check_out_is_an_error_naming_the_key() {
    let root = tempfile::tempdir().unwrap();
    let file = root.path().join("config.toml");
    for (text, expected) in [
        (
            "[profiles.a]\nsrever = \"http://x\"\n",
            "[profiles.a] srever: no such setting",
        ),
        (
            "[profiles.a]\ntoken = \"pcl_secret\"\n",
            "a profile holds no secret",
        ),
        (
            "profile = \"b\"\n[profiles.a]\n",
            "profile = \"b\": no [profiles.b]",
        ),
        ("[profiles.a]\nserver = 3\n", "expected a string"),
    ] {
        std::fs::write(&file, text).unwrap();
        let refused = stderr(&with_profiles(&file, &["admin", "whoami"], &[]));
        assert!(
            refused.contains(expected) && refused.contains(path(&file)),
            "{text}: {refused}"
        );
        assert!(!refused.contains("pcl_secret"), "{refused}");
    }
    // Without a file, naming a profile is an error; not naming one is fine.
    let missing = root.path().join("missing.toml");
    let refused = stderr(&with_profiles(
        &missing,
        &["admin", "--profile", "a", "whoami"],
        &[],
    ));
    assert!(refused.contains("there is no profile file"), "{refused}");
    let refused = stderr(&with_profiles(&missing, &["admin", "whoami"], &[]));
    assert!(refused.contains("no admin API token"), "{refused}");
}
