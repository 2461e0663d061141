//! Embed llamafarm-core in your own program: no server, no HTTP.
//!
//! Run: `cargo run -p llamafarm-examples --example embed_projects [DATA_DIR]`
//!
//! Creates a project from the built-in `rag` template, edits its config through
//! the typed API (validated and written atomically), lists projects, checks
//! which default models are on this machine, and deletes the project again.

use llamafarm_core::{LlamaFarm, LlamaFarmConfig, ModelCache};

fn main() -> anyhow::Result<()> {
    // The `LF_*` kernel and batching switches, as `lf` maps them.
    llamafarm_core::embed::configure(llamafarm_core::embed::EmbedOptions::from_vars(|n| std::env::var(n).ok()));
    let data_dir = match std::env::args().nth(1) {
        Some(d) => std::path::PathBuf::from(d),
        None => std::env::temp_dir().join(format!("llamafarm-example-{}", std::process::id())),
    };
    let lf = LlamaFarm::open_with(&data_dir, ModelCache::from_vars(|k| std::env::var_os(k)))?;
    println!("data directory: {}", lf.data_dir().display());

    let project = lf.projects().create("examples", "handbook-qa", Some("rag"))?;
    let cfg: LlamaFarmConfig = project.config()?;
    let db = cfg.default_database().expect("the rag template has a database");
    println!("created {}/{} with database '{}' ({} retrieval strategies)", project.namespace(), project.name(), db.name, cfg.retrieval_strategies_of(db).len());

    // Typed edit: add a second model; validation runs before anything is written.
    let updated = project.update_config(|c| {
        let mut m = c.default_model().expect("template has a model");
        m.name = "remote".into();
        m.provider = "openai".into();
        m.model = "gpt-4o-mini".into();
        m.base_url = Some("${OPENAI_BASE_URL:-https://api.openai.com/v1}".into());
        m.default = None;
        c.runtime.models.get_or_insert_with(Vec::new).push(m);
        Ok(())
    })?;
    println!("models now: {:?}", updated.models().iter().map(|m| m.name.as_str()).collect::<Vec<_>>());

    // An invalid edit is refused with the path and the rule.
    let err = project
        .update_config(|c| {
            c.runtime.default_model = Some("no-such-model".into());
            Ok(())
        })
        .unwrap_err();
    println!("refused: {err}");

    for p in lf.projects().list("examples")? {
        println!("project {}/{} (valid: {})", p.namespace, p.name, p.validation_error.is_none());
    }
    for c in lf.health().components {
        println!("health {:<16} {:?}: {}", c.name, c.status, c.message);
    }

    lf.projects().delete("examples", "handbook-qa")?;
    println!("deleted; {} projects left in 'examples'", lf.projects().list("examples")?.len());
    Ok(())
}
