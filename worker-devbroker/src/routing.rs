//! Exchanges, bindings and how a message finds its queues.

use amq_protocol::types::{AMQPValue, FieldTable};

use super::message::{as_int, as_text};

/// An exchange type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Direct,
    Fanout,
    Topic,
    Headers,
}

impl Kind {
    pub(crate) fn parse(s: &str) -> Option<Kind> {
        Some(match s {
            "direct" => Kind::Direct,
            "fanout" => Kind::Fanout,
            "topic" => Kind::Topic,
            "headers" => Kind::Headers,
            _ => return None,
        })
    }

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Kind::Direct => "direct",
            Kind::Fanout => "fanout",
            Kind::Topic => "topic",
            Kind::Headers => "headers",
        }
    }
}

/// Where a binding leads.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Dest {
    Queue(String),
    Exchange(String),
}

/// One binding of an exchange.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Binding {
    pub(crate) dest: Dest,
    pub(crate) key: String,
    pub(crate) args: FieldTable,
}

/// A declared exchange.
#[derive(Debug, Clone)]
pub(crate) struct Exchange {
    pub(crate) kind: Kind,
    pub(crate) durable: bool,
    pub(crate) auto_delete: bool,
    pub(crate) internal: bool,
    pub(crate) bindings: Vec<Binding>,
}

impl Exchange {
    pub(crate) fn new(kind: Kind, durable: bool) -> Exchange {
        Exchange {
            kind,
            durable,
            auto_delete: false,
            internal: false,
            bindings: Vec::new(),
        }
    }

    /// The destinations of a message with these routing keys and headers.
    pub(crate) fn matches<'a>(
        &'a self,
        keys: &'a [String],
        headers: Option<&'a FieldTable>,
    ) -> impl Iterator<Item = &'a Dest> + 'a {
        self.bindings
            .iter()
            .filter(move |b| match self.kind {
                Kind::Fanout => true,
                Kind::Direct => keys.contains(&b.key),
                Kind::Topic => keys.iter().any(|k| topic_matches(&b.key, k)),
                Kind::Headers => headers_match(&b.args, headers),
            })
            .map(|b| &b.dest)
    }
}

fn words(s: &str) -> Vec<&str> {
    if s.is_empty() {
        Vec::new()
    } else {
        s.split('.').collect()
    }
}

/// Topic matching: `*` is exactly one word, `#` zero or more.
pub(crate) fn topic_matches(pattern: &str, key: &str) -> bool {
    fn go(p: &[&str], w: &[&str]) -> bool {
        match p.split_first() {
            None => w.is_empty(),
            Some((&"#", rest)) => (0..=w.len()).any(|skip| go(rest, &w[skip..])),
            Some((&"*", rest)) => !w.is_empty() && go(rest, &w[1..]),
            Some((word, rest)) => w.first() == Some(word) && go(rest, &w[1..]),
        }
    }
    go(&words(pattern), &words(key))
}

fn same_value(a: &AMQPValue, b: &AMQPValue) -> bool {
    if let (Some(x), Some(y)) = (as_text(a), as_text(b)) {
        return x == y;
    }
    if let (Some(x), Some(y)) = (as_int(a), as_int(b)) {
        return x == y;
    }
    a == b
}

/// Headers-exchange matching: `x-match` `all` (the default) or `any`
/// (`all-with-x` / `any-with-x` also compare `x-` headers); a binding value
/// of type void only asks for the header to be present.
pub(crate) fn headers_match(binding: &FieldTable, headers: Option<&FieldTable>) -> bool {
    let mode = binding
        .inner()
        .get("x-match")
        .and_then(as_text)
        .unwrap_or_else(|| "all".to_owned());
    let with_x = mode.ends_with("-with-x");
    let any = mode.starts_with("any");
    let empty = FieldTable::default();
    let headers = headers.unwrap_or(&empty).inner();
    let mut wanted = binding
        .inner()
        .iter()
        .filter(|(k, _)| k.as_str() != "x-match" && (with_x || !k.as_str().starts_with("x-")))
        .peekable();
    if wanted.peek().is_none() {
        return !any;
    }
    let mut hit =
        |(k, v): (&amq_protocol::types::ShortString, &AMQPValue)| match headers.get(k.as_str()) {
            None => false,
            Some(h) => matches!(v, AMQPValue::Void) || same_value(v, h),
        };
    if any {
        wanted.any(&mut hit)
    } else {
        wanted.all(&mut hit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use amq_protocol::types::LongString;

    #[test]
    fn topic_words() {
        assert!(topic_matches("a.*", "a.b"));
        assert!(!topic_matches("a.*", "a"));
        assert!(!topic_matches("a.*", "a.b.c"));
        assert!(topic_matches("a.#", "a"));
        assert!(topic_matches("a.#", "a.b.c"));
        assert!(topic_matches("#.z", "z"));
        assert!(topic_matches("#.z", "a..z"));
        assert!(topic_matches("#", ""));
        assert!(topic_matches("*.b.*", "a.b.c"));
        assert!(!topic_matches("*.b.*", "a.b"));
        assert!(!topic_matches("a.b", "a.bb"));
        assert!(topic_matches("", ""));
        assert!(!topic_matches("*", ""));
    }

    fn table(items: &[(&str, &str)]) -> FieldTable {
        let mut t = FieldTable::default();
        for (k, v) in items {
            t.insert(
                (*k).into(),
                AMQPValue::LongString(LongString::from(v.as_bytes())),
            );
        }
        t
    }

    #[test]
    fn headers_all_and_any() {
        let all = table(&[("x-match", "all"), ("a", "1"), ("b", "2")]);
        let any = table(&[("x-match", "any"), ("a", "1"), ("b", "2")]);
        let both = table(&[("a", "1"), ("b", "2"), ("c", "3")]);
        let one = table(&[("a", "1"), ("b", "9")]);
        assert!(headers_match(&all, Some(&both)));
        assert!(!headers_match(&all, Some(&one)));
        assert!(headers_match(&any, Some(&one)));
        assert!(!headers_match(&any, None));
        let mut short = FieldTable::default();
        short.insert("a".into(), AMQPValue::ShortString("1".into()));
        short.insert("b".into(), AMQPValue::LongInt(2));
        let numbers = {
            let mut t = table(&[("x-match", "all"), ("a", "1")]);
            t.insert("b".into(), AMQPValue::LongLongInt(2));
            t
        };
        assert!(headers_match(&numbers, Some(&short)));
    }
}
