//! Files that are not valid plugins get one clear error each, naming the
//! file and what is wrong, and the valid plugins beside them still load and
//! serve.

mod common;

use hookhost::Host;

#[tokio::test]
async fn each_bad_file_is_named_and_the_rest_keep_serving() {
    let dir = common::plugins_dir(&["counts", "wrong-export", "unknown-import"]);
    let good = std::fs::read(common::fixture("counts")).unwrap();
    std::fs::write(dir.path().join("garbage.wasm"), b"this is not wasm at all").unwrap();
    std::fs::write(dir.path().join("truncated.wasm"), &good[..good.len() / 2]).unwrap();
    std::fs::write(dir.path().join("core.wasm"), b"\0asm\x01\0\0\0").unwrap();
    std::fs::write(dir.path().join("notes.txt"), b"ignored: not a .wasm file").unwrap();

    let host = Host::builder()
        .plugins_dir(dir.path())
        .build()
        .await
        .unwrap();
    let mut errors: Vec<String> = host.load_errors().iter().map(|e| e.to_string()).collect();
    errors.sort();
    assert_eq!(errors.len(), 5, "{errors:#?}");
    let error_for = |file: &str| {
        errors
            .iter()
            .find(|e| e.contains(&format!("{file}.wasm")))
            .unwrap_or_else(|| panic!("no error for {file}: {errors:#?}"))
            .clone()
    };
    assert!(error_for("garbage").contains("not a WebAssembly file"));
    assert!(error_for("core").contains("core WebAssembly module, not a component"));
    assert!(error_for("truncated").contains("invalid component"));
    let wrong_export = error_for("wrong-export");
    assert!(wrong_export.contains("does not implement hookhost:hooks/hook@0.1.0"));
    assert!(
        wrong_export.contains("handle"),
        "names the mismatched export: {wrong_export}"
    );
    let unknown_import = error_for("unknown-import");
    assert!(
        unknown_import.contains("hookhost:hooks/teleport"),
        "names the missing import: {unknown_import}"
    );

    assert_eq!(host.plugin_names(), ["counts"]);
    common::serves_then_shuts_down(host).await;
}

#[tokio::test]
async fn missing_plugins_folder_is_an_error_naming_it() {
    let err = Host::builder()
        .plugins_dir("/no/such/folder")
        .build()
        .await
        .err()
        .expect("fails");
    assert!(err.to_string().contains("/no/such/folder"), "{err}");
}

#[tokio::test]
async fn a_component_that_fails_to_instantiate_is_rejected_at_load() {
    let dir = common::plugins_dir(&["fails-at-instantiation"]);
    // Its 64 MiB of statics make the file larger than the default
    // `max_plugin_mib`.
    let host = Host::builder()
        .plugins_dir(dir.path())
        .config(common::config(
            "[engine]\nmax_plugin_mib = 128\n[defaults]\nmemory_mib = 16",
        ))
        .build()
        .await
        .unwrap();
    let errors: Vec<String> = host.load_errors().iter().map(|e| e.to_string()).collect();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].contains("fails-at-instantiation.wasm: fails when instantiated"),
        "{errors:?}"
    );
    assert!(
        errors[0].contains("memory cap of 16777216 bytes exceeded"),
        "{errors:?}"
    );
    assert!(host.plugin_names().is_empty());
}
