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
        Ok(Self { env, bos: bos.to_string(), eos: eos.to_string(), thinks: source.contains("enable_thinking") })
    }

    /// Render `messages` with the generation prompt appended.
    pub fn render(&self, messages: &[ChatMessage], think: bool) -> Result<String> {
        let t = self.env.get_template("chat").map_err(|e| Error::internal(format!("chat template: {e}")))?;
        let msgs: Vec<minijinja::Value> = messages.iter().map(|m| context! { role => m.role.clone(), content => m.content.clone() }).collect();
        t.render(context! {
            messages => msgs,
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

    #[test]
    fn chatml_fallback() {
        let t = ChatTemplate::new(CHATML, "", "").unwrap();
        let s = t.render(&[ChatMessage::new("system", "S"), ChatMessage::new("user", "Hi")], false).unwrap();
        assert_eq!(s, "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
    }
}
