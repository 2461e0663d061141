//! Chat templates: the Jinja template stored in a GGUF (`tokenizer.chat_template`),
//! rendered with minijinja the way Hugging Face's `apply_chat_template` does
//! (trim/lstrip blocks, Python string methods, `raise_exception`, `strftime_now`).
//! Used by engines that do not render templates themselves (llama.cpp only knows a
//! fixed list of template families and would drop, for example, SmolLM2's default
//! system prompt).

use super::ChatMessage;
use crate::error::{Error, Result};
use minijinja::{context, Environment, ErrorKind};

/// ChatML, the template of a model whose GGUF has none (llama.cpp's server falls back to
/// it too).
pub const CHATML: &str = "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

/// A compiled chat template.
pub struct ChatTemplate {
    env: Environment<'static>,
    bos: String,
    eos: String,
    /// The template has an `enable_thinking` switch (Qwen3 style).
    pub thinks: bool,
    /// The template writes `tools` and tool messages itself (Hugging Face's `tools=`).
    pub takes_tools: bool,
}

impl ChatTemplate {
    /// Compile `source` (the GGUF's template) with the model's BOS and EOS texts.
    pub fn new(source: &str, bos: &str, eos: &str) -> Result<Self> {
        let mut env = Environment::new();
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.set_lstrip_blocks(true);
        env.set_trim_blocks(true);
        env.add_function("raise_exception", |msg: String| -> std::result::Result<String, minijinja::Error> {
            Err(minijinja::Error::new(ErrorKind::InvalidOperation, msg))
        });
        env.add_function("strftime_now", |fmt: String| chrono::Utc::now().format(&fmt).to_string());
        // Python slicing that minijinja lacks.
        let src = source.replace("[::-1]", "|reverse");
        env.add_template_owned("chat", src).map_err(|e| Error::invalid("chat template", format!("of the model does not compile: {e}")))?;
        let takes_tools = source.contains("tools") && (source.contains("tool_calls") || source.contains("tool_call"));
        Ok(Self { env, bos: bos.to_string(), eos: eos.to_string(), thinks: source.contains("enable_thinking"), takes_tools })
    }

    /// Render `messages` with the generation prompt appended.
    pub fn render(&self, messages: &[ChatMessage], think: bool) -> Result<String> {
        self.render_with_tools(messages, &[], think)
    }

    /// Render `messages` and `tools` (OpenAI-shaped, as Hugging Face passes them;
    /// none when empty) with the generation prompt appended. A message's tool calls
    /// reach the template with their arguments as objects, as HF templates expect.
    pub fn render_with_tools(&self, messages: &[ChatMessage], tools: &[serde_json::Value], think: bool) -> Result<String> {
        let t = self.env.get_template("chat").map_err(|e| Error::internal(format!("chat template: {e}")))?;
        let msgs: Vec<minijinja::Value> = messages
            .iter()
            .map(|m| {
                let mut v = serde_json::json!({"role": m.role, "content": m.content});
                if let Some(calls) = &m.tool_calls {
                    v["tool_calls"] = calls
                        .iter()
                        .map(|c| serde_json::json!({"id": c.id, "type": "function", "function": {"name": c.function.name, "arguments": c.arguments()}}))
                        .collect();
                }
                if let Some(id) = &m.tool_call_id {
                    v["tool_call_id"] = id.clone().into();
                }
                if let Some(n) = &m.name {
                    v["name"] = n.clone().into();
                }
                minijinja::Value::from_serialize(&v)
            })
            .collect();
        let tools = (!tools.is_empty()).then(|| minijinja::Value::from_serialize(tools));
        t.render(context! {
            messages => msgs,
            tools => tools,
            add_generation_prompt => true,
            bos_token => self.bos.clone(),
            eos_token => self.eos.clone(),
            enable_thinking => think,
        })
        .map_err(|e| Error::invalid("chat template", format!("does not render: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // SmolLM2-135M-Instruct's template (from its GGUF).
    const SMOL: &str = "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

    #[test]
    fn renders_chatml_with_the_default_system_prompt() {
        let t = ChatTemplate::new(SMOL, "<|im_start|>", "<|im_end|>").unwrap();
        let s = t.render(&[ChatMessage::new("user", "Hi")], false).unwrap();
        assert_eq!(
            s,
            "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
        );
        let s = t.render(&[ChatMessage::new("system", "Be brief."), ChatMessage::new("user", "Hi")], false).unwrap();
        assert!(s.starts_with("<|im_start|>system\nBe brief.<|im_end|>\n"));
        assert!(!t.thinks);
    }

    #[test]
    fn python_methods_and_exceptions() {
        let t = ChatTemplate::new("{{ messages[0]['content'].strip() }}{% if messages|length > 1 %}{{ raise_exception('one message only') }}{% endif %}", "", "")
            .unwrap();
        assert_eq!(t.render(&[ChatMessage::new("user", "  x  ")], false).unwrap(), "x");
        let e = t.render(&[ChatMessage::new("user", "a"), ChatMessage::new("user", "b")], false).unwrap_err();
        assert!(e.to_string().contains("one message only"), "{e}");
        assert!(ChatTemplate::new("{% for %}", "", "").is_err());
    }

    /// A Hermes-style template (Qwen 2.5's tool part) gets the tools and the calls.
    #[test]
    fn tools_reach_a_template_that_takes_them() {
        let src = "{% if tools %}<tools>{% for t in tools %}{{ t.function.name }};{% endfor %}</tools>\n{% endif %}{% for m in messages %}{% if m.tool_calls %}{% for c in m.tool_calls %}<tool_call>{{ c.function.name }} {{ c.function.arguments | tojson }}</tool_call>{% endfor %}{% elif m.role == 'tool' %}<tool_response>{{ m.content }}</tool_response>{% else %}{{ m.role }}: {{ m.content }}\n{% endif %}{% endfor %}";
        let t = ChatTemplate::new(src, "", "").unwrap();
        assert!(t.takes_tools);
        let call = crate::llm::ToolCall::new("now", &serde_json::json!({"tz": "UTC"}));
        let msgs = vec![ChatMessage::new("user", "time?"), ChatMessage::tool_calls("", vec![call.clone()]), ChatMessage::tool_result(call.id, "now", "12:00")];
        let tools = vec![serde_json::json!({"type": "function", "function": {"name": "now", "parameters": {}}})];
        let s = t.render_with_tools(&msgs, &tools, false).unwrap();
        assert_eq!(s, "<tools>now;</tools>\nuser: time?\n<tool_call>now {\"tz\":\"UTC\"}</tool_call><tool_response>12:00</tool_response>");
        assert!(!ChatTemplate::new(CHATML, "", "").unwrap().takes_tools);
    }

    #[test]
    fn chatml_fallback() {
        let t = ChatTemplate::new(CHATML, "", "").unwrap();
        let s = t.render(&[ChatMessage::new("system", "S"), ChatMessage::new("user", "Hi")], false).unwrap();
        assert_eq!(s, "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
    }
}
