//! A minimal Server-Sent Events reader: enough of the format the Manager speaks
//! (`event:`, `data:`, `id:` fields, `:` comments, blank-line dispatch).

/// One dispatched event.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SseEvent {
    pub event: String,
    pub data: String,
    pub id: Option<String>,
}

/// Feeds bytes in, takes complete events (and heartbeats) out.
#[derive(Debug, Default)]
pub struct SseParser {
    buf: Vec<u8>,
    current: SseEvent,
}

/// What one complete line meant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SseItem {
    Event(SseEvent),
    /// A comment line (the Manager's heartbeat).
    Comment,
}

/// Lines longer than this are dropped (and the stream treated as broken by the caller).
const MAX_LINE: usize = 1 << 20;

impl SseParser {
    /// Appends `bytes`; returns every item completed by them.
    pub fn push(&mut self, bytes: &[u8]) -> Result<Vec<SseItem>, &'static str> {
        self.buf.extend_from_slice(bytes);
        let mut out = Vec::new();
        while let Some(pos) = self.buf.iter().position(|&b| b == b'\n') {
            let mut line: Vec<u8> = self.buf.drain(..=pos).collect();
            line.pop();
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            let line = String::from_utf8_lossy(&line);
            if line.is_empty() {
                let ev = std::mem::take(&mut self.current);
                if !ev.data.is_empty() || !ev.event.is_empty() {
                    out.push(SseItem::Event(ev));
                }
                continue;
            }
            if line.starts_with(':') {
                out.push(SseItem::Comment);
                continue;
            }
            let (field, value) = match line.split_once(':') {
                Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
                None => (&*line, ""),
            };
            match field {
                "event" => self.current.event = value.to_string(),
                "data" => {
                    if !self.current.data.is_empty() {
                        self.current.data.push('\n');
                    }
                    self.current.data.push_str(value);
                }
                "id" => self.current.id = Some(value.to_string()),
                _ => {}
            }
        }
        if self.buf.len() > MAX_LINE {
            return Err("event stream line too long");
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_events_split_across_chunks_and_comments() {
        let mut p = SseParser::default();
        assert!(p.push(b"event: revision\nid: 7\nda").unwrap().is_empty());
        let items = p.push(b"ta: {\"revision\":7}\n\n:heartbeat\n\n").unwrap();
        assert_eq!(
            items,
            vec![
                SseItem::Event(SseEvent {
                    event: "revision".into(),
                    data: "{\"revision\":7}".into(),
                    id: Some("7".into()),
                }),
                SseItem::Comment,
            ]
        );
    }

    #[test]
    fn crlf_and_multiline_data() {
        let mut p = SseParser::default();
        let items = p.push(b"data: a\r\ndata: b\r\n\r\n").unwrap();
        assert_eq!(
            items,
            vec![SseItem::Event(SseEvent {
                event: String::new(),
                data: "a\nb".into(),
                id: None,
            })]
        );
    }
}
