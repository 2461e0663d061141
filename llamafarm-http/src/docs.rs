//! The OpenAPI document (generated from the handlers by utoipa) and a browsable
//! page at `/docs` that renders it with no external resources (works offline).

use axum::response::{Html, IntoResponse};
use axum::routing::get;
use axum::Router;
use utoipa::openapi::{InfoBuilder, OpenApi, OpenApiBuilder};

/// The document skeleton; the routers add paths and schemas.
pub fn base_doc(title: &str, description: &str) -> OpenApi {
    OpenApiBuilder::new().info(InfoBuilder::new().title(title).version(llamafarm_core::system::VERSION).description(Some(description)).build()).build()
}

/// `GET /openapi.json` and `GET /docs`.
pub fn docs_router(doc: OpenApi, title: &str) -> Router {
    let json = doc.to_json().unwrap_or_else(|_| "{}".into());
    let page = DOCS_PAGE.replace("__TITLE__", title);
    Router::new()
        .route(
            "/openapi.json",
            get(move || {
                let json = json.clone();
                async move { ([(axum::http::header::CONTENT_TYPE, "application/json")], json).into_response() }
            }),
        )
        .route(
            "/docs",
            get(move || {
                let page = page.clone();
                async move { Html(page) }
            }),
        )
}

const DOCS_PAGE: &str = r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>__TITLE__ docs</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body{font-family:system-ui,sans-serif;margin:0;color:#1d2330;background:#f6f7f9}
header{background:#1d2330;color:#fff;padding:16px 24px}header h1{margin:0;font-size:20px}
main{max-width:1100px;margin:0 auto;padding:16px 24px}
input{width:100%;padding:8px;font-size:15px;margin:8px 0 16px;box-sizing:border-box}
details{background:#fff;border:1px solid #dde1e7;border-radius:6px;margin:6px 0}
summary{cursor:pointer;padding:10px;font-family:ui-monospace,monospace}
.m{display:inline-block;width:64px;font-weight:bold}.get{color:#0a7}.post{color:#06c}.put{color:#a60}.patch{color:#a0a}.delete{color:#c22}
pre{background:#f0f2f5;padding:10px;overflow:auto;margin:0 10px 10px;border-radius:4px;font-size:12px}
.d{padding:0 10px 6px;color:#555}
</style></head><body>
<header><h1>__TITLE__</h1><div id="ver"></div></header>
<main><input id="q" placeholder="Filter endpoints (path, method, tag)"><div id="list">Loading /openapi.json ...</div></main>
<script>
const esc=s=>String(s).replace(/[&<>]/g,c=>({'&':'&amp;','<':'&lt;','>':'&gt;'}[c]));
fetch('openapi.json').then(r=>r.json()).then(doc=>{
 document.getElementById('ver').textContent='version '+doc.info.version+' — OpenAPI '+doc.openapi+' — raw: /openapi.json';
 const items=[];
 for(const [path,ops] of Object.entries(doc.paths||{})) for(const [m,op] of Object.entries(ops)){
  if(!['get','post','put','patch','delete'].includes(m)) continue;
  items.push({path,m,op});
 }
 const render=q=>{
  document.getElementById('list').innerHTML=items.filter(i=>!q||(i.path+i.m+(i.op.tags||[]).join()).toLowerCase().includes(q)).map(({path,m,op})=>
   `<details><summary><span class="m ${m}">${m.toUpperCase()}</span>${esc(path)} <small>${esc(op.summary||'')}</small></summary>`+
   `<div class="d">${esc(op.description||'')}</div>`+
   (op.parameters?`<pre>parameters: ${esc(JSON.stringify(op.parameters,null,1))}</pre>`:'')+
   (op.requestBody?`<pre>request: ${esc(JSON.stringify(op.requestBody,null,1))}</pre>`:'')+
   `<pre>responses: ${esc(JSON.stringify(op.responses,null,1))}</pre></details>`).join('');
 };
 render('');document.getElementById('q').oninput=e=>render(e.target.value.toLowerCase());
 const s=doc.components&&doc.components.schemas;if(s){const d=document.createElement('details');
  d.innerHTML='<summary>Schemas</summary><pre>'+esc(JSON.stringify(s,null,1))+'</pre>';document.querySelector('main').appendChild(d);}
}).catch(e=>{document.getElementById('list').textContent='Could not load openapi.json: '+e});
</script></body></html>"#;
