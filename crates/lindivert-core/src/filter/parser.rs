//! The filter parser (WinDivert's `WinDivertParseFilter`, `ParseAndOrArg` and `ParseTest`):
//! tokens → AST.
//!
//! Grammar (FILTER.md §3):
//!
//! ```text
//! filter   ::= or_expr END
//! or_expr  ::= and_expr ( ("or" | "||") and_expr )*      -- right-nested
//! and_expr ::= arg ( ("and" | "&&") arg )*                -- left-nested
//! arg      ::= "(" or_expr ")" | "(" or_expr "?" or_expr ":" or_expr ")" | test
//! test     ::= ("not" | "!")* field_ref [ cmp ["-"] NUMBER ]
//! field_ref::= FIELD | "true" | "false" | ARRAY_FIELD "[" ["-"] NUMBER ["b"] "]"
//! ```
//!
//! `not` is folded into the test's operator (`not F == v` is `F != v`; an even number of
//! `not`s cancel), a bare field means `F != 0` (`not F` means `F == 0`), and the conditional
//! only exists inside parentheses.
//!
//! The nesting budget is WinDivert's: 1024, where each parenthesis level costs 3 and each
//! `or` operand costs 1; past it the error is TOO_DEEP.
//!
//! Differences from WinDivert: inside parentheses WinDivert replaces any error of the inner
//! expression (TOO_DEEP, INDEX_OOB, ...) by a parse error at the same token; here the first
//! error is reported as it is. A negative zero constant (`-0`) is plain 0 here (WinDivert
//! emits a "negative zero" that its own driver then rejects). INDEX_OOB points at the index
//! number (WinDivert points at the token after it).

use super::error::{ErrorKind, FilterError};
use super::fields::Field;
use super::ir::{Op, Value};
use super::lexer::{Lexer, Token, TokenKind};
use crate::types::Layer;

/// WinDivert's recursion budget for the parser.
pub const MAX_DEPTH: i32 = 1024;

/// Largest array index number (`WINDIVERT_MTU_MAX` = 40 + 65535).
pub const MAX_INDEX: u128 = 65575;

/// Index of a node in [`Ast::nodes`].
pub type NodeId = u32;

/// What a test compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Subject {
    /// The constant `true` (value 1).
    True,
    /// The constant `false` (value 0).
    False,
    /// A plain field.
    Field(Field),
    /// An array field with its signed byte offset (`packet32[-1]` is -4).
    Array {
        /// The array field.
        field: Field,
        /// Byte offset: from the region start if `>= 0`, from its end if `< 0`.
        index: i32,
    },
}

impl Subject {
    /// The field, if this is not a constant.
    pub fn field(&self) -> Option<Field> {
        match *self {
            Subject::True | Subject::False => None,
            Subject::Field(f) | Subject::Array { field: f, .. } => Some(f),
        }
    }

    /// The byte index (0 for non-array subjects).
    pub fn index(&self) -> i32 {
        match *self {
            Subject::Array { index, .. } => index,
            _ => 0,
        }
    }
}

/// One test `subject op value`, with `not`s already folded into `op`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TestNode {
    /// What is compared.
    pub subject: Subject,
    /// The comparison.
    pub op: Op,
    /// The constant (never negative zero).
    pub value: Value,
    /// Byte position of the field (or `true`/`false`) token.
    pub pos: usize,
    /// Byte position of the constant, or of the field for an implicit `!= 0`.
    pub value_pos: usize,
}

/// An expression node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Node {
    /// A single test.
    Test(TestNode),
    /// `a and b`.
    And(NodeId, NodeId),
    /// `a or b`.
    Or(NodeId, NodeId),
    /// `(c? t: e)`.
    Cond(NodeId, NodeId, NodeId),
}

/// A parsed filter: an arena of nodes and the root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ast {
    /// The nodes; children always come before their parents.
    pub nodes: Vec<Node>,
    /// The root node.
    pub root: NodeId,
}

impl Ast {
    /// The node `id`.
    ///
    /// # Panics
    /// If `id` is not a node of this AST (ids from the parser always are).
    pub fn node(&self, id: NodeId) -> &Node {
        &self.nodes[id as usize]
    }
}

/// Tokenize and parse `text` for `layer`.
///
/// Same result as [`tokenize`](super::lexer::tokenize) then [`parse_tokens`] (a tokenizer error wins over a parse
/// error), without building the token list: the parser pulls tokens as it goes.
pub fn parse(text: &str, layer: Layer) -> Result<Ast, FilterError> {
    parse_reusing(text, layer, Vec::new())
}

/// [`parse`], with the nodes in `buf` (cleared first), so that a caller can reuse its
/// allocation.
pub(crate) fn parse_reusing(text: &str, layer: Layer, buf: Vec<Node>) -> Result<Ast, FilterError> {
    let mut lexer = Lexer::new(text, layer);
    let first = lexer.next_token()?;
    let mut src = Stream {
        lexer,
        cur: first,
        error: None,
    };
    let r = parse_from(&mut src, text, layer, buf);
    if let Some(e) = src.error {
        return Err(e);
    }
    match r {
        Ok(ast) => Ok(ast),
        Err(e) => {
            // The tokenizer runs over the whole text first: its error, if any, wins.
            if src.cur.kind != TokenKind::End {
                loop {
                    if src.lexer.next_token()?.kind == TokenKind::End {
                        break;
                    }
                }
            }
            Err(e)
        }
    }
}

/// Parse tokens from [`tokenize`](super::lexer::tokenize). `text` and `layer` are only used for error details.
pub fn parse_tokens(toks: &[Token], text: &str, layer: Layer) -> Result<Ast, FilterError> {
    parse_from(&mut Slice { toks, i: 0, text }, text, layer, Vec::new())
}

fn parse_from<S: Source>(
    src: &mut S,
    text: &str,
    layer: Layer,
    mut nodes: Vec<Node>,
) -> Result<Ast, FilterError> {
    nodes.clear();
    nodes.reserve(text.len() / 5 + 2);
    let mut p = Parser {
        src,
        text,
        layer,
        nodes,
    };
    let root = p.parse_filter(MAX_DEPTH, false)?;
    let t = p.peek();
    if t.kind != TokenKind::End {
        return Err(trailing(&p, &t));
    }
    Ok(Ast {
        nodes: p.nodes,
        root,
    })
}

#[cold]
#[inline(never)]
fn trailing<S: Source>(p: &Parser<'_, S>, t: &Token) -> FilterError {
    let detail = match t.kind {
        TokenKind::Close => "unbalanced `)`".to_string(),
        TokenKind::Colon => "`:` outside a conditional `(a? b: c)`".to_string(),
        TokenKind::Question => "a conditional must be in parentheses: `(a? b: c)`".to_string(),
        _ => format!("expected `and`, `or` or the end, found {}", p.describe(t)),
    };
    FilterError::new(ErrorKind::UnexpectedToken, t.pos, detail)
}

/// Where the parser gets its tokens.
trait Source {
    /// The current token ([`TokenKind::End`] past the end).
    fn peek(&self) -> Token;
    /// Move to the next token (never past the end).
    fn advance(&mut self);
}

/// Tokens from a list.
struct Slice<'a> {
    toks: &'a [Token],
    i: usize,
    text: &'a str,
}

impl Source for Slice<'_> {
    #[inline]
    fn peek(&self) -> Token {
        match self.toks.get(self.i) {
            Some(t) => *t,
            None => Token {
                kind: TokenKind::End,
                pos: self.text.len(),
                len: 0,
            },
        }
    }

    #[inline]
    fn advance(&mut self) {
        if self.i < self.toks.len() {
            self.i += 1;
        }
    }
}

/// Tokens straight from the lexer. A tokenizer error is kept in `error` (it is the result,
/// whatever the parser makes of the end token that stands in for the rest).
struct Stream<'a> {
    lexer: Lexer<'a>,
    cur: Token,
    error: Option<FilterError>,
}

impl Source for Stream<'_> {
    #[inline]
    fn peek(&self) -> Token {
        self.cur
    }

    #[inline]
    fn advance(&mut self) {
        if self.cur.kind == TokenKind::End {
            return;
        }
        match self.lexer.next_token() {
            Ok(t) => self.cur = t,
            Err(e) => self.stop(e),
        }
    }
}

impl Stream<'_> {
    #[cold]
    #[inline(never)]
    fn stop(&mut self, e: FilterError) {
        self.cur = Token {
            kind: TokenKind::End,
            pos: e.pos,
            len: 0,
        };
        self.error = Some(e);
    }
}

#[derive(Clone, Copy)]
enum ArgError {
    Colon,
    CloseCond,
    Close,
}

struct Parser<'a, S> {
    src: &'a mut S,
    text: &'a str,
    layer: Layer,
    nodes: Vec<Node>,
}

impl<S: Source> Parser<'_, S> {
    #[inline]
    fn peek(&self) -> Token {
        self.src.peek()
    }

    #[inline]
    fn advance(&mut self) {
        self.src.advance();
    }

    #[inline]
    fn push(&mut self, n: Node) -> NodeId {
        self.nodes.push(n);
        (self.nodes.len() - 1) as NodeId
    }

    fn describe(&self, t: &Token) -> String {
        if t.kind == TokenKind::End {
            return "the end of the filter".to_string();
        }
        match self.text.get(t.pos..t.pos + t.len) {
            Some(s) => format!("`{s}`"),
            None => format!("{:?}", t.kind),
        }
    }

    fn unexpected(&self, t: &Token, detail: String) -> FilterError {
        FilterError::new(ErrorKind::UnexpectedToken, t.pos, detail)
    }

    #[cold]
    #[inline(never)]
    fn too_deep(&self) -> FilterError {
        FilterError::new(
            ErrorKind::TooDeep,
            self.peek().pos,
            "nesting exceeds WinDivert's limit (about 340 parentheses, or about 1000 `or` \
             operands in one chain)",
        )
    }

    /// `WinDivertParseFilter`: with `and`, an `and`-chain continued by `or`s; without,
    /// a whole `or` expression.
    fn parse_filter(&mut self, depth: i32, and: bool) -> Result<NodeId, FilterError> {
        if depth < 0 {
            return Err(self.too_deep());
        }
        let depth = depth - 1;
        let mut expr = if and {
            self.parse_arg(depth)?
        } else {
            self.parse_filter(depth, true)?
        };
        loop {
            match self.peek().kind {
                TokenKind::And => {
                    self.advance();
                    let arg = self.parse_arg(depth)?;
                    expr = self.push(Node::And(expr, arg));
                }
                TokenKind::Or => {
                    self.advance();
                    let arg = self.parse_filter(depth, true)?;
                    expr = self.push(Node::Or(expr, arg));
                }
                _ => return Ok(expr),
            }
        }
    }

    /// `WinDivertParseAndOrArg`: a parenthesised expression or conditional, or a test.
    fn parse_arg(&mut self, depth: i32) -> Result<NodeId, FilterError> {
        if depth < 0 {
            return Err(self.too_deep());
        }
        let depth = depth - 1;
        let open = self.peek();
        if open.kind != TokenKind::Open {
            return self.parse_test();
        }
        self.advance();
        let cond = self.parse_filter(depth, false)?;
        let t = self.peek();
        match t.kind {
            TokenKind::Close => {
                self.advance();
                Ok(cond)
            }
            TokenKind::Question => {
                self.advance();
                let th = self.parse_filter(depth, false)?;
                if self.peek().kind != TokenKind::Colon {
                    return Err(self.arg_error(ArgError::Colon, open.pos));
                }
                self.advance();
                let el = self.parse_filter(depth, false)?;
                if self.peek().kind != TokenKind::Close {
                    return Err(self.arg_error(ArgError::CloseCond, open.pos));
                }
                self.advance();
                Ok(self.push(Node::Cond(cond, th, el)))
            }
            _ => Err(self.arg_error(ArgError::Close, open.pos)),
        }
    }

    /// The errors of [`Parser::parse_arg`], out of line to keep the recursive frames small.
    #[cold]
    #[inline(never)]
    fn arg_error(&self, which: ArgError, open_pos: usize) -> FilterError {
        let t = self.peek();
        let found = self.describe(&t);
        let detail = match which {
            ArgError::Colon => {
                format!("expected `:` in the conditional `(a? b: c)`, found {found}")
            }
            ArgError::CloseCond => format!(
                "expected `)` to close the conditional opened at byte {open_pos}, found {found}"
            ),
            ArgError::Close => format!(
                "expected `)` (or `?` for a conditional) to match the `(` at byte {open_pos}, \
                 found {found}"
            ),
        };
        self.unexpected(&t, detail)
    }

    /// `WinDivertParseTest` (never inlined: it is not recursive, and inlining it would grow
    /// the frames of the recursive functions).
    #[inline(never)]
    fn parse_test(&mut self) -> Result<NodeId, FilterError> {
        let mut not = false;
        let mut nots = 0usize;
        while self.peek().kind == TokenKind::Not {
            not = !not;
            nots += 1;
            self.advance();
        }
        let t = self.peek();
        let subject = match t.kind {
            TokenKind::True => {
                self.advance();
                Subject::True
            }
            TokenKind::False => {
                self.advance();
                Subject::False
            }
            TokenKind::Field(f) if f.is_array() => {
                self.advance();
                let index = self.parse_index(f)?;
                Subject::Array { field: f, index }
            }
            TokenKind::Field(f) => {
                self.advance();
                Subject::Field(f)
            }
            TokenKind::Open if nots > 0 => {
                return Err(self.unexpected(
                    &t,
                    "`not` applies only to a single test, not to a parenthesised expression; \
                     for a negation write `(X? false: true)`"
                        .to_string(),
                ))
            }
            TokenKind::Macro(name) => {
                return Err(self.unexpected(
                    &t,
                    format!(
                        "expected a test, found the value `{name}` (which is not even valid at \
                         the {} layer)",
                        self.layer
                    ),
                ))
            }
            _ => {
                let after = if nots > 0 { " after `not`" } else { "" };
                return Err(self.unexpected(
                    &t,
                    format!(
                        "expected a test (a field, `true`, `false`, `not` or `(`){after}, found {}",
                        self.describe(&t)
                    ),
                ));
            }
        };
        let op_tok = self.peek();
        let op = match op_tok.kind {
            TokenKind::Eq => Op::Eq,
            TokenKind::Neq => Op::Neq,
            TokenKind::Lt => Op::Lt,
            TokenKind::Le => Op::Le,
            TokenKind::Gt => Op::Gt,
            TokenKind::Ge => Op::Ge,
            _ => {
                // Implicit `!= 0` (`== 0` after an odd number of `not`s).
                let op = if not { Op::Eq } else { Op::Neq };
                return Ok(self.push(Node::Test(TestNode {
                    subject,
                    op,
                    value: Value::pos(0),
                    pos: t.pos,
                    value_pos: t.pos,
                })));
            }
        };
        let op = if not { op.negate() } else { op };
        self.advance();
        let mut neg = false;
        if self.peek().kind == TokenKind::Minus {
            neg = true;
            self.advance();
        }
        let v = self.peek();
        let TokenKind::Number(mag) = v.kind else {
            let op_text = self.describe(&op_tok);
            let detail = match v.kind {
                TokenKind::Macro(name) => format!(
                    "`{name}` is not a value at the {} layer (expected a value after {op_text})",
                    self.layer
                ),
                _ => format!(
                    "expected a value after {op_text}, found {}",
                    self.describe(&v)
                ),
            };
            return Err(self.unexpected(&v, detail));
        };
        self.advance();
        Ok(self.push(Node::Test(TestNode {
            subject,
            op,
            value: Value {
                neg: neg && mag != 0,
                mag,
            },
            pos: t.pos,
            value_pos: v.pos,
        })))
    }

    /// `[ ["-"] NUMBER ["b"] ]` after an array field; returns the signed byte offset.
    fn parse_index(&mut self, field: Field) -> Result<i32, FilterError> {
        let name = field.name();
        let t = self.peek();
        if t.kind != TokenKind::SquareOpen {
            return Err(self.unexpected(
                &t,
                format!(
                    "expected `[` after `{name}` (write `{name}[i]`), found {}",
                    self.describe(&t)
                ),
            ));
        }
        self.advance();
        let mut neg = false;
        if self.peek().kind == TokenKind::Minus {
            neg = true;
            self.advance();
        }
        let n = self.peek();
        let TokenKind::Number(v) = n.kind else {
            return Err(self.unexpected(
                &n,
                format!("expected an index number, found {}", self.describe(&n)),
            ));
        };
        if v > MAX_INDEX {
            return Err(FilterError::new(
                ErrorKind::IndexOob,
                n.pos,
                format!("index {v} is larger than {MAX_INDEX}"),
            ));
        }
        self.advance();
        let size = field.word_size();
        // v <= 65575, so this fits easily.
        let mut idx = v as u32;
        let bytes = self.peek().kind == TokenKind::Bytes;
        if bytes {
            self.advance();
        } else {
            idx *= size;
        }
        let max = u32::from(u16::MAX);
        let sign = if neg { "-" } else { "" };
        let b = if bytes { "b" } else { "" };
        if !neg && idx > max - size {
            return Err(FilterError::new(
                ErrorKind::IndexOob,
                n.pos,
                format!(
                    "`{name}[{v}{b}]` reads bytes {idx}..{} (the limit is byte offset {})",
                    idx + size,
                    max - size
                ),
            ));
        }
        if neg && idx > max {
            return Err(FilterError::new(
                ErrorKind::IndexOob,
                n.pos,
                format!("`{name}[-{v}{b}]`: offset -{idx} is below -{max}"),
            ));
        }
        if neg && idx < size {
            return Err(FilterError::new(
                ErrorKind::IndexOob,
                n.pos,
                format!(
                    "`{name}[{sign}{v}{b}]`: a negative offset must be at least the word size \
                     ({size}); `[-1]` is the last word"
                ),
            ));
        }
        let t = self.peek();
        if t.kind != TokenKind::SquareClose {
            return Err(self.unexpected(&t, format!("expected `]`, found {}", self.describe(&t))));
        }
        self.advance();
        Ok(if neg { -(idx as i32) } else { idx as i32 })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Ast {
        parse(s, Layer::Network).unwrap()
    }

    fn err(s: &str) -> (ErrorKind, usize) {
        let e = parse(s, Layer::Network).unwrap_err();
        (e.kind, e.pos)
    }

    fn test_of(ast: &Ast) -> TestNode {
        match ast.node(ast.root) {
            Node::Test(t) => *t,
            n => panic!("not a test: {n:?}"),
        }
    }

    #[test]
    fn implicit_and_not_folding() {
        let t = test_of(&p("tcp"));
        assert_eq!(
            (t.subject, t.op, t.value),
            (Subject::Field(Field::Tcp), Op::Neq, Value::pos(0))
        );
        let t = test_of(&p("not tcp"));
        assert_eq!(t.op, Op::Eq);
        let t = test_of(&p("!!tcp"));
        assert_eq!(t.op, Op::Neq);
        for (src, op) in [
            ("not tcp.DstPort == 80", Op::Neq),
            ("not tcp.DstPort != 80", Op::Eq),
            ("not tcp.DstPort < 80", Op::Ge),
            ("not tcp.DstPort <= 80", Op::Gt),
            ("not tcp.DstPort > 80", Op::Le),
            ("not tcp.DstPort >= 80", Op::Lt),
            ("not not tcp.DstPort >= 80", Op::Ge),
            ("tcp.DstPort = 80", Op::Eq),
        ] {
            assert_eq!(test_of(&p(src)).op, op, "{src}");
        }
        let t = test_of(&p("timestamp > -1"));
        assert_eq!(t.value, Value { neg: true, mag: 1 });
        let t = test_of(&p("timestamp > -0"));
        assert_eq!(t.value, Value::pos(0));
        assert_eq!(t.value_pos, 13);
    }

    #[test]
    fn precedence() {
        // a or b and c = a or (b and c)
        let a = p("tcp or udp and icmp");
        match a.node(a.root) {
            Node::Or(l, r) => {
                assert!(matches!(a.node(*l), Node::Test(_)));
                assert!(matches!(a.node(*r), Node::And(_, _)));
            }
            n => panic!("{n:?}"),
        }
        // a and b or c = (a and b) or c
        let a = p("tcp and udp or icmp");
        assert!(matches!(a.node(a.root), Node::Or(l, _) if matches!(a.node(*l), Node::And(..))));
        // or is right-nested, and is left-nested
        let a = p("tcp or udp or icmp");
        assert!(matches!(a.node(a.root), Node::Or(_, r) if matches!(a.node(*r), Node::Or(..))));
        let a = p("tcp and udp and icmp");
        assert!(matches!(a.node(a.root), Node::And(l, _) if matches!(a.node(*l), Node::And(..))));
        let a = p("(tcp? udp: icmp)");
        assert!(matches!(a.node(a.root), Node::Cond(..)));
        // `udp:icmp` is one (bad) word.
        assert_eq!(err("(tcp? udp:icmp)"), (ErrorKind::BadToken, 6));
    }

    #[test]
    fn arrays() {
        let idx = |s: &str| test_of(&p(s)).subject.index();
        assert_eq!(idx("packet[55] == 1"), 55);
        assert_eq!(idx("packet[55b] == 1"), 55);
        assert_eq!(idx("packet16[2b] == 1"), 2);
        assert_eq!(idx("packet16[1] == 1"), 2);
        assert_eq!(idx("packet32[-1] == 1"), -4);
        assert_eq!(idx("packet32[-5b] == 1"), -5);
        assert_eq!(idx("packet[10 b] == 1"), 10);
        assert_eq!(idx("packet32[10 b] == 1"), 40);
        assert_eq!(idx("packet[TCP] == 1"), 6);
        assert_eq!(idx("packet[65534]"), 65534);
        assert_eq!(idx("packet16[65533b]"), 65533);
        assert_eq!(idx("packet[-65535]"), -65535);
        assert_eq!(err("packet[65535]"), (ErrorKind::IndexOob, 7));
        assert_eq!(err("packet16[32767]"), (ErrorKind::IndexOob, 9));
        assert_eq!(err("packet[65576]"), (ErrorKind::IndexOob, 7));
        assert_eq!(err("packet[-65536]"), (ErrorKind::IndexOob, 8));
        assert_eq!(err("packet32[-1b] == 0"), (ErrorKind::IndexOob, 10));
        assert_eq!(err("packet[-0]"), (ErrorKind::IndexOob, 8));
        assert_eq!(err("packet[-0b]"), (ErrorKind::IndexOob, 8));
        assert_eq!(err("packet == 1"), (ErrorKind::UnexpectedToken, 7));
        assert_eq!(err("packet[tcp]"), (ErrorKind::UnexpectedToken, 7));
        assert_eq!(err("packet[1"), (ErrorKind::UnexpectedToken, 8));
        assert_eq!(err("tcp.DstPort[1]"), (ErrorKind::UnexpectedToken, 11));
    }

    #[test]
    fn parse_errors() {
        assert_eq!(err("not (tcp or udp)"), (ErrorKind::UnexpectedToken, 4));
        let e = parse("not (tcp or udp)", Layer::Network).unwrap_err();
        assert!(e.detail.contains("single test"), "{}", e.detail);
        assert_eq!(err("event == CONNECT"), (ErrorKind::UnexpectedToken, 9));
        let e = parse("event == CONNECT", Layer::Network).unwrap_err();
        assert!(
            e.detail
                .contains("`CONNECT` is not a value at the NETWORK layer"),
            "{}",
            e.detail
        );
        assert_eq!(err("tcp.DstPort =="), (ErrorKind::UnexpectedToken, 14));
        let e = parse("tcp.DstPort == and", Layer::Network).unwrap_err();
        assert_eq!(e.detail, "expected a value after `==`, found `and`");
        assert_eq!(err(""), (ErrorKind::UnexpectedToken, 0));
        assert_eq!(err("tcp and"), (ErrorKind::UnexpectedToken, 7));
        assert_eq!(err("tcp udp"), (ErrorKind::UnexpectedToken, 4));
        assert_eq!(err("(tcp"), (ErrorKind::UnexpectedToken, 4));
        assert_eq!(err("tcp)"), (ErrorKind::UnexpectedToken, 3));
        assert_eq!(err("tcp? udp: icmp"), (ErrorKind::UnexpectedToken, 3));
        assert_eq!(err("(tcp? udp)"), (ErrorKind::UnexpectedToken, 9));
        assert_eq!(err("(tcp? udp: icmp"), (ErrorKind::UnexpectedToken, 15));
        assert_eq!(err("80 == tcp.DstPort"), (ErrorKind::UnexpectedToken, 0));
        assert_eq!(
            err("tcp.DstPort == - 80 - 1"),
            (ErrorKind::UnexpectedToken, 20)
        );
        assert_eq!(err("tcp == --1"), (ErrorKind::UnexpectedToken, 8));
        assert_eq!(err("not"), (ErrorKind::UnexpectedToken, 3));
        assert_eq!(err("CONNECT"), (ErrorKind::UnexpectedToken, 0));
        assert_eq!(err("()"), (ErrorKind::UnexpectedToken, 1));
    }

    #[test]
    fn depth_budget() {
        // Each parenthesis level costs 3 of the 1024 budget: the top level uses 2, so 340
        // levels still parse and 341 do not.
        let nest = |n: usize| format!("{}tcp{}", "(".repeat(n), ")".repeat(n));
        assert!(parse(&nest(340), Layer::Network).is_ok());
        let e = parse(&nest(341), Layer::Network).unwrap_err();
        assert_eq!(e.kind, ErrorKind::TooDeep);
        // Each `or` operand costs 1: inside 300 parentheses 123 operands fit, 124 do not.
        let chain = |n: usize| {
            format!(
                "{}{}{}",
                "(".repeat(300),
                vec!["tcp"; n].join(" or "),
                ")".repeat(300)
            )
        };
        assert!(parse(&chain(123), Layer::Network).is_ok());
        let e = parse(&chain(124), Layer::Network).unwrap_err();
        assert_eq!(e.kind, ErrorKind::TooDeep);
        assert_eq!(e.pos, 300 + 123 * 7);
        // `and` costs nothing.
        assert!(parse(&vec!["tcp"; 639].join(" and "), Layer::Network).is_ok());
    }
}
