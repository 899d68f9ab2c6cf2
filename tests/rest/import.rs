//! `orthweb import`: a folder with DICOM files in subfolders, a ZIP of two more, a JSON file
//! and a truncated DICOM file, imported into a data store, then served byte for byte; imported
//! again, everything is already stored.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::common::server::{Server, ServerConfig};
use crate::support::{Api, set, strings};
use crate::uploads::generate;

/// What the folder holds: the instances it should give (ID → bytes) and the files it should
/// reject.
struct Source {
    root: PathBuf,
    instances: BTreeMap<String, Vec<u8>>,
    rejected: Vec<PathBuf>,
}

fn prepare(dir: &Path) -> Source {
    let root = dir.join("in");
    let mut instances = BTreeMap::new();
    // Three files: two in `a/`, one moved down to `b/c/`.
    for made in generate(501, &root.join("a"), &[2, 1], 16) {
        instances.insert(made.id.clone(), made.bytes.clone());
        if made.path.ends_with("2_1.dcm") {
            std::fs::create_dir_all(root.join("b/c")).unwrap();
            std::fs::rename(&made.path, root.join("b/c/2_1.dcm")).unwrap();
        }
    }
    // Two in a ZIP.
    let mut writer = zip::ZipWriter::new(std::fs::File::create(root.join("two.zip")).unwrap());
    for made in generate(502, &dir.join("zipped"), &[2], 16) {
        let name = made.path.file_name().unwrap().to_string_lossy().to_string();
        writer
            .start_file(name, zip::write::SimpleFileOptions::default())
            .unwrap();
        writer.write_all(&made.bytes).unwrap();
        instances.insert(made.id, made.bytes);
    }
    writer.finish().unwrap();
    // A JSON file (as Orthanc's storage folder holds beside the DICOM files) and a file cut
    // in its pixel data.
    let json = root.join("b/attachment.json");
    std::fs::write(&json, br#"{"not": "DICOM"}"#).unwrap();
    let cut = generate(503, &dir.join("cut"), &[1], 16).remove(0);
    let truncated = root.join("a/truncated.dcm");
    std::fs::write(&truncated, &cut.bytes[..cut.bytes.len() - 50]).unwrap();
    Source {
        root,
        instances,
        rejected: vec![json, truncated],
    }
}

/// Runs `orthweb import` on `source` into the store of `config` under `data_dir`.
async fn import(data_dir: &Path, config: &ServerConfig, source: &Path) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_orthweb"));
    command
        .arg("import")
        .arg("--data-dir")
        .arg(data_dir)
        .args(&config.args)
        .args(["--jobs", "3"])
        .arg(source)
        .env_remove("ORTHWEB_CONFIG")
        .envs(config.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    tokio::task::spawn_blocking(move || command.output())
        .await
        .unwrap()
        .expect("run orthweb import")
}

/// The counts of the summary line `stored N, already stored M, rejected K, failed F`.
fn summary(out: &Output) -> [u64; 4] {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .find(|l| l.starts_with("stored "))
        .unwrap_or_else(|| panic!("orthweb import: no summary line in {stdout:?}"));
    let numbers: Vec<u64> = line
        .split([',', ' '])
        .filter_map(|w| w.parse().ok())
        .collect();
    numbers
        .try_into()
        .unwrap_or_else(|_| panic!("orthweb import: summary line {line:?}"))
}

fn describe(out: &Output) -> String {
    format!(
        "{}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Imports into the store `config` names (under `work`), with a server started before the
/// first import (`server_first`) or only after it; checks the server lists the instances
/// with the bytes of the files; imports again.
pub async fn round_trip(work: &Path, config: ServerConfig, server_first: bool) {
    let source = prepare(&work.join("import-source"));
    let data = work.join("import-data");
    let start = || tokio::task::block_in_place(|| Server::start(&data, config.clone()));
    let running = server_first.then(start);

    let out = import(&data, &config, &source.root).await;
    assert!(out.status.success(), "orthweb import: {}", describe(&out));
    let n = source.instances.len() as u64;
    assert_eq!(
        summary(&out),
        [n, 0, 2, 0],
        "first import (stored, already stored, rejected, failed): {}",
        describe(&out)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    for rejected in &source.rejected {
        assert!(
            stdout.contains(&rejected.display().to_string()),
            "orthweb import: the summary names {}: {stdout}",
            rejected.display()
        );
    }

    let server = running.unwrap_or_else(start);
    let api = Api::new(server.url(""));
    let check = || async {
        let listed = strings(&api.json("/instances").await);
        assert_eq!(
            set(&listed),
            set(source.instances.keys()),
            "/instances after the import"
        );
        for (id, bytes) in &source.instances {
            let file = api.get(&format!("/instances/{id}/file")).await;
            file.assert_status(200);
            assert!(file.body == *bytes, "{id}: not the imported file");
        }
    };
    check().await;

    // Again, while the server runs: nothing new.
    let out = import(&data, &config, &source.root).await;
    assert!(out.status.success(), "orthweb import: {}", describe(&out));
    assert_eq!(
        summary(&out),
        [0, n, 2, 0],
        "second import (stored, already stored, rejected, failed): {}",
        describe(&out)
    );
    check().await;
}
