//! The web app's HTTP side over a real socket: the shell for browsers at `/` and
//! `/ui/...`, JSON for API clients, assets that load without a key and reach no other
//! origin, and the endpoints the app reads (sessions, `llamafarm.yaml`, loaded models).
//! The app itself is driven in Chromium by `scripts/web/run.sh`.

use crate::support::{assert_detail, TestServer};
use llamafarm_core::llm::ChatMessage;
use llamafarm_http::{ApiKey, HttpOptions};
use serde_json::json;

async fn html(s: &TestServer, path: &str) -> reqwest::Response {
    s.http.get(s.url(path)).header("accept", "text/html,application/xhtml+xml,*/*;q=0.8").send().await.unwrap()
}

#[tokio::test]
async fn browsers_get_the_app_and_api_clients_json() {
    let s = TestServer::start().await;
    let r = html(&s, "/").await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "text/html; charset=utf-8");
    assert!(r.headers()["content-security-policy"].to_str().unwrap().contains("connect-src 'self'"));
    let page = r.text().await.unwrap();
    let js = page.split("src=\"").nth(1).unwrap().split('"').next().unwrap().to_string();
    let css = page.split("stylesheet\" href=\"").nth(1).unwrap().split('"').next().unwrap().to_string();
    assert!(js.starts_with("/ui/assets/app.js?v="), "{js}");
    for (asset, kind) in [(&js, "text/javascript"), (&css, "text/css")] {
        let r = s.http.get(s.url(asset)).send().await.unwrap();
        assert_eq!(r.status(), 200, "{asset}");
        assert!(r.headers()["content-type"].to_str().unwrap().starts_with(kind));
        assert!(r.headers()["cache-control"].to_str().unwrap().contains("immutable"));
        let body = r.text().await.unwrap();
        assert!(!body.contains("http://") && !body.contains("https://"), "{asset} names another origin");
        assert!(body.len() < 100_000, "{asset}: {} bytes", body.len());
    }
    // Every app page is the same shell; an API client still gets the JSON root.
    for path in ["/ui", "/ui/p/default/demo/chat", "/ui/models"] {
        let r = html(&s, path).await;
        assert_eq!(r.status(), 200, "{path}");
        assert!(r.text().await.unwrap().contains("data-base=\"\""), "{path}");
    }
    let (st, root) = s.get("/").await;
    assert_eq!((st, root["message"].as_str()), (200, Some("LlamaFarm API")));
    let r = s.http.get(s.url("/")).header("accept", "application/json").send().await.unwrap();
    assert_eq!(r.headers()["content-type"], "application/json");
}

#[tokio::test]
async fn sessions_config_yaml_and_loaded_models() {
    let s = TestServer::start().await;
    let (st, _) = s.post("/v1/projects/web", json!({"name": "app"})).await;
    assert_eq!(st, 200);

    // Sessions: listed with their sizes and titles, the most recent first.
    let (st, list) = s.get("/v1/projects/web/app/chat/sessions").await;
    assert_eq!((st, list), (200, json!({"total": 0, "sessions": []})));
    let p = s.lf.project("web", "app").unwrap();
    s.lf.sessions().open(&p, "first").unwrap().append(&[ChatMessage::new("user", "What do llamas eat?"), ChatMessage::new("assistant", "Grass.")]).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(20));
    s.lf.sessions().open(&p, "second").unwrap().append(&[ChatMessage::new("system", "Be brief."), ChatMessage::new("user", "Hi")]).unwrap();
    let (st, list) = s.get("/v1/projects/web/app/chat/sessions").await;
    assert_eq!(st, 200);
    assert_eq!(list["total"], 2);
    assert_eq!(list["sessions"][0]["session_id"], "second");
    assert_eq!(list["sessions"][0]["title"], "Hi");
    assert_eq!(list["sessions"][1]["title"], "What do llamas eat?");
    assert_eq!(list["sessions"][1]["message_count"], 2);
    assert!(list["sessions"][1]["updated_at"].as_str().unwrap().ends_with('Z'));
    let (st, body) = s.get("/v1/projects/web/nope/chat/sessions").await;
    let d = assert_detail(&(st, body), 404);
    assert!(d.contains("nope"), "{d}");

    // llamafarm.yaml as text: read, a bad value names its path, a good edit is saved.
    let r = s.http.get(s.url("/v1/projects/web/app/llamafarm.yaml")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"].to_str().unwrap().starts_with("application/yaml"));
    let yaml = r.text().await.unwrap();
    assert!(yaml.contains("name: app") && yaml.contains("provider: universal"), "{yaml}");
    let put = |text: String| s.http.put(s.url("/v1/projects/web/app/llamafarm.yaml")).header("content-type", "application/yaml").body(text).send();
    let r = put(yaml.replacen("provider: universal", "provider: bogus", 1)).await.unwrap();
    let (st, body) = (r.status().as_u16(), r.json::<serde_json::Value>().await.unwrap());
    let d = assert_detail(&(st, body), 422);
    assert!(d.contains("runtime.models[0].provider"), "{d}");
    let r = put("version: v1\nname: [unclosed\n".into()).await.unwrap();
    let (st, body) = (r.status().as_u16(), r.json::<serde_json::Value>().await.unwrap());
    assert!((400..500).contains(&st), "{st} {body}");
    assert!(body["detail"].as_str().unwrap().contains("line"), "{body}");
    let r = put(yaml.replace("You are a helpful AI assistant.", "You answer in one sentence.")).await.unwrap();
    assert_eq!(r.status(), 200);
    let (_, got) = s.get("/v1/projects/web/app").await;
    assert!(got["project"]["config"]["prompts"][0]["messages"][0]["content"].as_str().unwrap().starts_with("You answer in one sentence."));
    let r = s.http.get(s.url("/v1/projects/web/missing/llamafarm.yaml")).send().await.unwrap();
    assert_eq!(r.status(), 404);

    // Loaded models: none yet, and the process's memory.
    let (st, loaded) = s.get("/v1/models/loaded").await;
    assert_eq!(st, 200);
    assert_eq!(loaded["models"], json!([]));
    assert!(loaded["resident_bytes"].as_u64().unwrap() > 1 << 20, "{loaded}");
}

#[tokio::test]
async fn with_api_keys_the_app_loads_but_its_data_needs_the_key() {
    let opts = HttpOptions { api_keys: vec![ApiKey::parse("web-secret-key").unwrap()], ..HttpOptions::default() };
    let s = TestServer::start_with(opts).await;
    assert_eq!(html(&s, "/").await.status(), 200);
    assert_eq!(html(&s, "/ui/status").await.status(), 200);
    let (st, body) = s.get("/").await;
    let d = assert_detail(&(st, body), 401);
    assert!(d.contains("API key"), "{d}");
    let r = html(&s, "/v1/projects/default").await;
    assert_eq!(r.status(), 401);
    let r = s.http.post(s.url("/ui/status")).header("accept", "text/html").send().await.unwrap();
    assert_eq!(r.status(), 401);
    let r = s.http.get(s.url("/v1/projects/default")).bearer_auth("web-secret-key").send().await.unwrap();
    assert_eq!(r.status(), 200);
}
