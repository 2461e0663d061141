//! Every `curl` command of the README's tour, run as written against a real server
//! (hosts rewritten to the test's ports, the sample files taken from the shared data):
//! each answers 2xx, or the status its `# -> NNN` comment promises.

use crate::support::TestServer;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The `curl` commands of the README's tour sections, continuation lines joined, each
/// with the status its following `# -> NNN` comment names (if any).
fn tour_commands(readme: &str) -> Vec<(String, Option<u16>)> {
    let start = readme.find("## A short tour").expect("README has a tour");
    let end = readme[start..].find("The CLI talks to the same API").map(|e| start + e).unwrap_or(readme.len());
    let mut out: Vec<(String, Option<u16>)> = Vec::new();
    let mut in_block = false;
    let mut current: Option<String> = None;
    for line in readme[start..end].lines() {
        if line.starts_with("```") {
            in_block = !in_block;
            continue;
        }
        if !in_block {
            continue;
        }
        if let Some(c) = current.as_mut() {
            c.push('\n');
            c.push_str(line);
            if !line.trim_end().ends_with('\\') && c.matches('\'').count() % 2 == 0 {
                out.push((current.take().unwrap(), None));
            }
            continue;
        }
        let t = line.trim();
        if let Some(rest) = t.strip_prefix("# -> ") {
            if let (Some(last), Ok(code)) = (out.last_mut(), rest.split_whitespace().next().unwrap_or("").parse::<u16>()) {
                last.1 = Some(code);
            }
            continue;
        }
        if t.starts_with("curl ") {
            let c = line.split("  #").next().unwrap_or(line).to_string();
            if c.trim_end().ends_with('\\') || c.matches('\'').count() % 2 == 1 {
                current = Some(c);
            } else {
                out.push((c, None));
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_readme_tour_runs_as_written() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let shared = root.join("../shared/data/llamafarm-examples");
    let samples = [
        ("handbook.pdf", shared.join("fda_rag/files")),
        ("invoice.pdf", shared.join("ocr_and_document/healthcare-aug-2025.pdf")),
        ("scan.pdf", shared.join("ocr_and_document/healthcare-aug-2025.pdf")),
        ("receipt.png", shared.join("ocr_and_document/receipt.png")),
    ];
    if !shared.is_dir() || Command::new("curl").arg("--version").output().is_err() {
        eprintln!("SKIP the_readme_tour_runs_as_written: {} or curl is absent", shared.display());
        return;
    }
    let work = tempfile::tempdir().unwrap();
    for (name, src) in &samples {
        let src = if src.is_dir() {
            std::fs::read_dir(src).unwrap().flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|e| e == "pdf")).min().unwrap()
        } else {
            src.clone()
        };
        std::fs::copy(&src, work.path().join(name)).unwrap();
    }
    // The hub the tour's model commands reach: one on loopback serving that repo's listing.
    let hub = llamafarm_tests::hub::HubServer::start().await;
    hub.add_repo(
        "sentence-transformers/all-MiniLM-L6-v2",
        vec![("config.json", llamafarm_tests::hub::Source::Bytes(b"{}".to_vec())), ("model.safetensors", llamafarm_tests::hub::Source::Bytes(vec![0; 4096]))],
    );
    let s = TestServer::start_custom(true, Some(&hub.endpoint), vec![root.join("examples/projects")]).await;
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let cmds = tour_commands(&readme);
    assert!(cmds.len() >= 20, "found only {} curl commands in the tour", cmds.len());
    let api = s.base.trim_start_matches("http://").to_string();
    let rt = s.runtime_base.trim_start_matches("http://").to_string();
    for (cmd, want) in cmds {
        let cmd = cmd.replace("localhost:8000", &api).replace("localhost:11540", &rt);
        let script = format!("{cmd} -o /dev/null -w '%{{http_code}}'");
        let dir: &Path = work.path();
        let out = tokio::task::spawn_blocking({
            let dir = dir.to_path_buf();
            move || Command::new("sh").arg("-c").arg(&script).current_dir(dir).output().unwrap()
        })
        .await
        .unwrap();
        let code: u16 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap_or(0);
        match want {
            Some(w) => assert_eq!(code, w, "{cmd}"),
            None => assert!((200..300).contains(&code), "{code} for: {cmd}\n{}", String::from_utf8_lossy(&out.stderr)),
        }
    }
}

#[test]
fn the_tour_parser_joins_continuations_and_reads_expected_codes() {
    let md = "## A short tour\n```sh\ncurl -s a \\\n  -d '{}'\n# -> 422 {\"detail\": \"x\"}\ncurl -s b -d '{\n  \"k\": 1}'\nopen x\n```\n";
    let c = tour_commands(md);
    assert_eq!(c.len(), 2);
    assert_eq!(c[0], ("curl -s a \\\n  -d '{}'".to_string(), Some(422)));
    assert!(c[1].0.ends_with("1}'"));
}
