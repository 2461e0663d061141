//! Splitting a model's `<think>...</think>` block from its answer, incrementally
//! (streamed pieces can cut a tag in half).
//!
//! ```
//! use llamafarm_core::llm::{think::ThinkSplitter, StreamEvent};
//! let mut s = ThinkSplitter::new(false);
//! let mut seen = Vec::new();
//! for piece in ["<th", "ink>2+2", " is 4</thi", "nk>\n\nFour."] {
//!     s.push(piece, &mut |ev| seen.push(format!("{ev:?}")));
//! }
//! s.finish(&mut |ev| seen.push(format!("{ev:?}")));
//! assert_eq!(s.into_parts(), ("Four.".to_string(), Some("2+2 is 4".to_string())));
//! ```

use super::StreamEvent;

/// Opening tag of a thinking block.
pub const THINK_OPEN: &str = "<think>";
/// Closing tag of a thinking block.
pub const THINK_CLOSE: &str = "</think>";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Nothing decisive seen yet: the text may still open with `<think>`.
    Start,
    Thinking,
    Answer,
}

/// Routes text pieces to thinking or answer.
#[derive(Debug)]
pub struct ThinkSplitter {
    mode: Mode,
    buf: String,
    thinking: String,
    content: String,
    saw_thinking: bool,
    trim_answer_start: bool,
}

/// Length of the longest suffix of `s` that is a proper prefix of `tag`.
fn partial_tag_suffix(s: &str, tag: &str) -> usize {
    (1..tag.len()).rev().find(|&k| s.ends_with(&tag[..k])).unwrap_or(0)
}

impl ThinkSplitter {
    /// `in_thinking`: the prompt already opened the block (prefilled `<think>`).
    pub fn new(in_thinking: bool) -> Self {
        Self {
            mode: if in_thinking { Mode::Thinking } else { Mode::Start },
            buf: String::new(),
            thinking: String::new(),
            content: String::new(),
            saw_thinking: in_thinking,
            trim_answer_start: false,
        }
    }

    /// Whether a thinking block was seen.
    pub fn saw_thinking(&self) -> bool {
        self.saw_thinking
    }

    fn emit_content(&mut self, mut text: &str, out: &mut dyn FnMut(StreamEvent<'_>)) {
        if self.trim_answer_start {
            text = text.trim_start();
            if text.is_empty() {
                return;
            }
            self.trim_answer_start = false;
        }
        if text.is_empty() {
            return;
        }
        // Stray closing tags (some templates emit one without an opening tag).
        let cleaned;
        let text = if text.contains(THINK_CLOSE) {
            cleaned = text.replace(THINK_CLOSE, "");
            cleaned.as_str()
        } else {
            text
        };
        self.content.push_str(text);
        out(StreamEvent::Content(text));
    }

    fn emit_thinking(&mut self, text: &str, out: &mut dyn FnMut(StreamEvent<'_>)) {
        let text = if self.thinking.is_empty() { text.trim_start() } else { text };
        if text.is_empty() {
            return;
        }
        self.thinking.push_str(text);
        out(StreamEvent::Thinking(text));
    }

    /// Feed the next piece of generated text.
    pub fn push(&mut self, piece: &str, out: &mut dyn FnMut(StreamEvent<'_>)) {
        self.buf.push_str(piece);
        loop {
            match self.mode {
                Mode::Start => {
                    let t = self.buf.trim_start();
                    if let Some(rest) = t.strip_prefix(THINK_OPEN) {
                        self.buf = rest.to_string();
                        self.mode = Mode::Thinking;
                        self.saw_thinking = true;
                        continue;
                    }
                    if THINK_OPEN.starts_with(t) {
                        return; // undecided (possibly empty)
                    }
                    self.mode = Mode::Answer;
                    continue;
                }
                Mode::Thinking => {
                    if let Some(i) = self.buf.find(THINK_CLOSE) {
                        let before = self.buf[..i].to_string();
                        let after = self.buf[i + THINK_CLOSE.len()..].to_string();
                        self.emit_thinking(before.trim_end(), out);
                        self.buf = after;
                        self.mode = Mode::Answer;
                        self.trim_answer_start = true;
                        continue;
                    }
                    let keep = partial_tag_suffix(&self.buf, THINK_CLOSE);
                    let cut = self.buf.len() - keep;
                    let head = self.buf[..cut].to_string();
                    self.buf.drain(..cut);
                    self.emit_thinking(&head, out);
                    return;
                }
                Mode::Answer => {
                    let keep = partial_tag_suffix(&self.buf, THINK_CLOSE);
                    let cut = self.buf.len() - keep;
                    let head = self.buf[..cut].to_string();
                    self.buf.drain(..cut);
                    self.emit_content(&head, out);
                    return;
                }
            }
        }
    }

    /// Flush what is held back (end of generation).
    pub fn finish(&mut self, out: &mut dyn FnMut(StreamEvent<'_>)) {
        let rest = std::mem::take(&mut self.buf);
        match self.mode {
            Mode::Thinking => self.emit_thinking(rest.trim_end(), out),
            Mode::Start | Mode::Answer => self.emit_content(&rest, out),
        }
        // An answer never ends in whitespace the model emitted before EOS.
        let trimmed = self.content.trim_end().len();
        self.content.truncate(trimmed);
    }

    /// `(answer, thinking)`.
    pub fn into_parts(self) -> (String, Option<String>) {
        let thinking = self.saw_thinking.then(|| self.thinking.trim().to_string());
        (self.content, thinking)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(prefilled: bool, pieces: &[&str]) -> (String, Option<String>, String, String) {
        let mut s = ThinkSplitter::new(prefilled);
        let (mut th, mut co) = (String::new(), String::new());
        let mut f = |ev: StreamEvent<'_>| match ev {
            StreamEvent::Thinking(t) => th.push_str(t),
            StreamEvent::Content(c) => co.push_str(c),
            StreamEvent::ToolCall(_) | StreamEvent::ToolResult(_) => {}
        };
        for p in pieces {
            s.push(p, &mut f);
        }
        s.finish(&mut f);
        let (c, t) = s.into_parts();
        (c, t, th, co)
    }

    #[test]
    fn plain_text_passes_through() {
        let (c, t, _, co) = run(false, &["Hel", "lo ", "world"]);
        assert_eq!(c, "Hello world");
        assert_eq!(co, "Hello world");
        assert_eq!(t, None);
    }

    #[test]
    fn split_tags_across_pieces() {
        let (c, t, th, co) = run(false, &["  <", "thi", "nk>a b", "</", "think>", "\n\nanswer"]);
        assert_eq!(c, "answer");
        assert_eq!(t.as_deref(), Some("a b"));
        assert_eq!(th, "a b");
        assert_eq!(co, "answer");
    }

    #[test]
    fn prefilled_and_unclosed() {
        let (c, t, _, _) = run(true, &["still thinking"]);
        assert_eq!(c, "");
        assert_eq!(t.as_deref(), Some("still thinking"));
        let (c, t, _, _) = run(true, &["x</think>y"]);
        assert_eq!((c.as_str(), t.as_deref()), ("y", Some("x")));
    }

    #[test]
    fn stray_close_tag_is_stripped_and_lt_passes() {
        let (c, _, _, _) = run(false, &["a < b", "</think> c"]);
        assert_eq!(c, "a < b c");
        let (c, _, _, _) = run(false, &["<b>bold</b>"]);
        assert_eq!(c, "<b>bold</b>");
    }
}
