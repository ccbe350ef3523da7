//! The rewrite itself: frame boundaries in a byte stream, and the nesting
//! bound in one content header. Pure functions over bytes, no I/O.

/// How many tables and arrays may nest inside a message's header table
/// before the guard turns the next one into a byte array. The header table
/// itself is level 0; a table directly inside it is level 1.
pub const MAX_TABLE_NESTING: usize = 128;

/// AMQP frame types (AMQP 0-9-1 section 4.2.3; RabbitMQ sends heartbeats as 8).
const METHOD: u8 = 1;
const CONTENT_HEADER: u8 = 2;
const CONTENT_BODY: u8 = 3;
const HEARTBEAT: u8 = 8;
/// Type, channel and size.
const FRAME_HEADER_LEN: usize = 7;
/// The largest content header the guard holds back to inspect. RabbitMQ's
/// `frame_max` is at most 128 KiB by default and a few MiB at most when
/// raised; a bigger frame passes unread (lapin refuses it anyway).
const MAX_HELD: usize = 16 << 20;
/// `basic`, the only content class.
const BASIC_CLASS: u16 = 60;
/// Class, weight, body size, property flags.
const PROPERTIES_START: usize = 14;
const CONTENT_TYPE: u16 = 1 << 15;
const CONTENT_ENCODING: u16 = 1 << 14;
const HEADERS: u16 = 1 << 13;

/// Bounds the nesting of the header table in one `basic` content-header
/// payload (the frame's payload, without its 7-byte frame header and the
/// frame-end octet), in place. Returns whether anything was rewritten.
///
/// A table or array below [`MAX_TABLE_NESTING`] levels keeps its bytes but
/// has its type octet changed from `F` or `A` to `x` (byte array, same
/// layout). Nothing is allocated beyond a stack of at most
/// [`MAX_TABLE_NESTING`] entries and nothing recurses. A payload that is not
/// well formed is rewritten up to the first malformed field and left as is
/// from there: a parser stops at that field too, so it never descends past
/// the bound.
pub fn bound_header_depth(payload: &mut [u8]) -> bool {
    let Some(start) = headers_offset(payload) else {
        return false;
    };
    bound_table(payload, start)
}

/// [`bound_header_depth`] on a bare field table (size prefix included).
#[cfg(test)]
pub(crate) fn bound_field_table(table: &mut [u8]) -> bool {
    bound_table(table, 0)
}

/// Where the header table starts in a content-header payload, if it has one.
fn headers_offset(payload: &[u8]) -> Option<usize> {
    let class = u16::from_be_bytes([*payload.first()?, *payload.get(1)?]);
    let flags = u16::from_be_bytes([
        *payload.get(PROPERTIES_START - 2)?,
        *payload.get(PROPERTIES_START - 1)?,
    ]);
    if class != BASIC_CLASS || flags & HEADERS == 0 {
        return None;
    }
    let mut at = PROPERTIES_START;
    for short_string in [CONTENT_TYPE, CONTENT_ENCODING] {
        if flags & short_string != 0 {
            at += 1 + usize::from(*payload.get(at)?);
        }
    }
    (at < payload.len()).then_some(at)
}

/// Reads a long-uint at `at`.
fn long_uint(bytes: &[u8], at: usize) -> Option<usize> {
    let raw = bytes.get(at..at.checked_add(4)?)?;
    Some(u32::from_be_bytes([raw[0], raw[1], raw[2], raw[3]]) as usize)
}

/// An open table or array: where it ends and whether its entries have keys.
struct Open {
    end: usize,
    keyed: bool,
}

/// Walks the field table at `start` (size prefix included) without
/// recursion, turning containers past the bound into byte arrays.
fn bound_table(bytes: &mut [u8], start: usize) -> bool {
    let Some(size) = long_uint(bytes, start) else {
        return false;
    };
    let body = start + 4;
    if body + size > bytes.len() {
        return false;
    }
    let mut rewritten = false;
    let mut open = vec![Open {
        end: body + size,
        keyed: true,
    }];
    let mut at = body;
    while let Some(top) = open.last() {
        let end = top.end;
        if at == end {
            open.pop();
            continue;
        }
        if top.keyed {
            at += 1 + usize::from(bytes[at]);
        }
        if at >= end {
            return rewritten;
        }
        let kind = bytes[at];
        at += 1;
        let fixed = match kind {
            b't' | b'b' | b'B' => 1,
            b's' | b'U' | b'u' => 2,
            b'I' | b'i' | b'f' => 4,
            b'D' => 5,
            b'L' | b'l' | b'd' | b'T' => 8,
            b'V' => 0,
            b'S' | b'x' | b'F' | b'A' => {
                let Some(size) = long_uint(bytes, at) else {
                    return rewritten;
                };
                let inner_end = at + 4 + size;
                if inner_end > end {
                    return rewritten;
                }
                if matches!(kind, b'F' | b'A') {
                    if open.len() > MAX_TABLE_NESTING {
                        bytes[at - 1] = b'x';
                        rewritten = true;
                    } else {
                        open.push(Open {
                            end: inner_end,
                            keyed: kind == b'F',
                        });
                        at += 4;
                        continue;
                    }
                }
                4 + size
            }
            _ => return rewritten,
        };
        if at + fixed > end {
            return rewritten;
        }
        at += fixed;
    }
    rewritten
}

/// Where the scanner is in the stream of frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Position {
    /// Reading a frame header (the bytes so far are held).
    FrameHeader,
    /// Passing this many more bytes of a frame that needs no inspection.
    Passing(usize),
    /// Holding a content header until this many more bytes (payload and
    /// frame end) arrived.
    Holding(usize),
    /// Not a frame stream the guard understands (a protocol-header reply,
    /// say): everything passes as is.
    Opaque,
}

/// Splits a byte stream into AMQP frames and applies [`bound_header_depth`]
/// to every content header, passing everything else through unchanged.
#[derive(Debug)]
pub(crate) struct FrameScanner {
    position: Position,
    held: Vec<u8>,
}

impl Default for FrameScanner {
    fn default() -> Self {
        FrameScanner {
            position: Position::FrameHeader,
            held: Vec::new(),
        }
    }
}

impl FrameScanner {
    /// Feeds bytes as they arrive; appends to `out` everything that is ready.
    pub(crate) fn feed(&mut self, mut input: &[u8], out: &mut Vec<u8>) {
        while !input.is_empty() {
            match self.position {
                Position::Opaque => {
                    out.extend_from_slice(input);
                    return;
                }
                Position::Passing(left) => {
                    let now = left.min(input.len());
                    out.extend_from_slice(&input[..now]);
                    input = &input[now..];
                    self.position = match left - now {
                        0 => Position::FrameHeader,
                        more => Position::Passing(more),
                    };
                }
                Position::FrameHeader => {
                    let now = (FRAME_HEADER_LEN - self.held.len()).min(input.len());
                    self.held.extend_from_slice(&input[..now]);
                    input = &input[now..];
                    if self.held.len() == FRAME_HEADER_LEN {
                        self.start_frame(out);
                    }
                }
                Position::Holding(left) => {
                    let now = left.min(input.len());
                    self.held.extend_from_slice(&input[..now]);
                    input = &input[now..];
                    if left == now {
                        let payload_end = self.held.len() - 1;
                        bound_header_depth(&mut self.held[FRAME_HEADER_LEN..payload_end]);
                        self.release(out, Position::FrameHeader);
                    } else {
                        self.position = Position::Holding(left - now);
                    }
                }
            }
        }
    }

    /// The stream ended: whatever is held goes out as it is.
    pub(crate) fn finish(&mut self, out: &mut Vec<u8>) {
        self.release(out, Position::Opaque);
    }

    /// A whole frame header is held: decide what to do with the frame.
    fn start_frame(&mut self, out: &mut Vec<u8>) {
        let kind = self.held[0];
        let size =
            u32::from_be_bytes([self.held[3], self.held[4], self.held[5], self.held[6]]) as usize;
        // Payload and the frame-end octet.
        let rest = size.saturating_add(1);
        match kind {
            CONTENT_HEADER if rest <= MAX_HELD => {
                self.held.reserve(rest);
                self.position = Position::Holding(rest);
            }
            METHOD | CONTENT_HEADER | CONTENT_BODY | HEARTBEAT => {
                self.release(out, Position::Passing(rest));
            }
            _ => self.release(out, Position::Opaque),
        }
    }

    fn release(&mut self, out: &mut Vec<u8>, next: Position) {
        out.extend_from_slice(&self.held);
        self.held.clear();
        self.position = next;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A header table `{k: {k: ... {} }}` nested `depth` tables deep.
    fn nested_table(depth: usize) -> Vec<u8> {
        let mut table: Vec<u8> = 0u32.to_be_bytes().to_vec();
        for _ in 0..depth {
            let mut outer = Vec::with_capacity(table.len() + 7);
            outer.extend_from_slice(&((table.len() + 3) as u32).to_be_bytes());
            outer.extend_from_slice(&[1, b'k', b'F']);
            outer.extend_from_slice(&table);
            table = outer;
        }
        table
    }

    /// A `basic` content-header payload with a content type and `headers`.
    fn content_header(headers: &[u8]) -> Vec<u8> {
        let mut payload = Vec::new();
        payload.extend_from_slice(&BASIC_CLASS.to_be_bytes());
        payload.extend_from_slice(&0u16.to_be_bytes());
        payload.extend_from_slice(&5u64.to_be_bytes());
        payload.extend_from_slice(&(CONTENT_TYPE | HEADERS).to_be_bytes());
        payload.extend_from_slice(&[4, b'j', b's', b'o', b'n']);
        payload.extend_from_slice(headers);
        payload
    }

    fn frame(kind: u8, payload: &[u8]) -> Vec<u8> {
        let mut frame = vec![kind, 0, 1];
        frame.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        frame.extend_from_slice(payload);
        frame.push(0xCE);
        frame
    }

    /// How deep the parsed table nests (lapin's own parser, iteratively walked).
    fn parsed_depth(headers: &[u8]) -> usize {
        use lapin::types::AMQPValue;
        let (_, table) = lapin::types::parsing::parse_field_table(headers).expect("parses");
        let mut deepest = 0;
        let mut open: Vec<(usize, AMQPValue)> =
            table.inner().values().map(|v| (1, v.clone())).collect();
        while let Some((depth, value)) = open.pop() {
            match value {
                AMQPValue::FieldTable(t) => {
                    deepest = deepest.max(depth);
                    open.extend(t.inner().values().map(|v| (depth + 1, v.clone())));
                }
                AMQPValue::FieldArray(a) => {
                    deepest = deepest.max(depth);
                    open.extend(a.as_slice().iter().map(|v| (depth + 1, v.clone())));
                }
                _ => {}
            }
        }
        deepest
    }

    #[test]
    fn a_table_at_the_bound_is_left_alone() {
        let headers = nested_table(MAX_TABLE_NESTING);
        let mut payload = content_header(&headers);
        let before = payload.clone();
        assert!(!bound_header_depth(&mut payload));
        assert_eq!(payload, before);
    }

    #[test]
    fn fifteen_thousand_levels_become_bytes_below_the_bound() {
        let headers = nested_table(15_000);
        let mut payload = content_header(&headers);
        let len = payload.len();
        assert!(bound_header_depth(&mut payload));
        assert_eq!(payload.len(), len, "the rewrite keeps the frame's size");
        let rewritten = &payload[PROPERTIES_START + 5..];
        assert_eq!(parsed_depth(rewritten), MAX_TABLE_NESTING);
        // Exactly one type octet changed: the first container past the bound.
        let changed = payload
            .iter()
            .zip(content_header(&headers).iter())
            .filter(|(a, b)| a != b)
            .count();
        assert_eq!(changed, 1);
    }

    #[test]
    fn arrays_count_as_levels_too() {
        // {k: [[[ ... ]]]}: arrays nested inside one table entry.
        let mut array: Vec<u8> = 0u32.to_be_bytes().to_vec();
        for _ in 0..1_000 {
            let mut outer = Vec::new();
            outer.extend_from_slice(&((array.len() + 1) as u32).to_be_bytes());
            outer.push(b'A');
            outer.extend_from_slice(&array);
            array = outer;
        }
        let mut headers = Vec::new();
        headers.extend_from_slice(&((array.len() + 3) as u32).to_be_bytes());
        headers.extend_from_slice(&[1, b'k', b'A']);
        headers.extend_from_slice(&array);
        let mut payload = content_header(&headers);
        assert!(bound_header_depth(&mut payload));
        assert_eq!(
            parsed_depth(&payload[PROPERTIES_START + 5..]),
            MAX_TABLE_NESTING
        );
    }

    #[test]
    fn ordinary_headers_pass_unchanged() {
        // {a: 1 (I), s: "hi" (S), t: [true], n: {x: void}}
        let mut table = Vec::new();
        table.extend_from_slice(&[1, b'a', b'I', 0, 0, 0, 1]);
        table.extend_from_slice(&[1, b's', b'S', 0, 0, 0, 2, b'h', b'i']);
        table.extend_from_slice(&[1, b't', b'A', 0, 0, 0, 2, b't', 1]);
        table.extend_from_slice(&[1, b'n', b'F', 0, 0, 0, 3, 1, b'x', b'V']);
        let mut headers = (table.len() as u32).to_be_bytes().to_vec();
        headers.extend_from_slice(&table);
        let mut payload = content_header(&headers);
        let before = payload.clone();
        assert!(!bound_header_depth(&mut payload));
        assert_eq!(payload, before);
    }

    #[test]
    fn malformed_and_short_payloads_are_left_as_they_are() {
        for mut payload in [
            vec![],
            vec![0, 60],
            content_header(&[0, 0, 0, 9, 1]),
            content_header(&[0, 0, 0, 3, 1, b'k', b'?']),
        ] {
            let before = payload.clone();
            assert!(!bound_header_depth(&mut payload));
            assert_eq!(payload, before);
        }
    }

    #[test]
    fn the_scanner_rewrites_content_headers_however_the_stream_is_cut() {
        let deep = content_header(&nested_table(2_000));
        let mut bounded = deep.clone();
        bound_header_depth(&mut bounded);
        let stream: Vec<u8> = [
            frame(METHOD, b"method"),
            frame(CONTENT_HEADER, &deep),
            frame(CONTENT_BODY, b"body!"),
            frame(HEARTBEAT, b""),
        ]
        .concat();
        let expected: Vec<u8> = [
            frame(METHOD, b"method"),
            frame(CONTENT_HEADER, &bounded),
            frame(CONTENT_BODY, b"body!"),
            frame(HEARTBEAT, b""),
        ]
        .concat();
        for chunk in [1, 2, 3, 7, 8, 100, 4096, stream.len()] {
            let mut scanner = FrameScanner::default();
            let mut out = Vec::new();
            for piece in stream.chunks(chunk) {
                scanner.feed(piece, &mut out);
            }
            scanner.finish(&mut out);
            assert_eq!(out, expected, "chunks of {chunk}");
        }
    }

    #[test]
    fn a_stream_that_is_not_frames_passes_untouched() {
        // A broker that refuses the protocol version answers with its own
        // protocol header and closes.
        let stream = b"AMQP\x00\x00\x09\x01".repeat(3);
        let mut scanner = FrameScanner::default();
        let mut out = Vec::new();
        scanner.feed(&stream, &mut out);
        scanner.finish(&mut out);
        assert_eq!(out, stream);
    }

    #[test]
    fn a_stream_cut_inside_a_held_frame_hands_over_what_it_held() {
        let stream = frame(CONTENT_HEADER, &content_header(&nested_table(3)));
        let cut = &stream[..stream.len() - 4];
        let mut scanner = FrameScanner::default();
        let mut out = Vec::new();
        scanner.feed(cut, &mut out);
        assert!(out.is_empty(), "a content header is held until complete");
        scanner.finish(&mut out);
        assert_eq!(out, cut);
    }
}
