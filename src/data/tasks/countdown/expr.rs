//! The countdown expression grammar: a recursive-descent parser and an exact integer scorer.

use std::collections::HashMap;

use super::Verdict;

/// Countdown expressions longer than this are malformed (bounds the parser's work and recursion).
const MAX_EXPR_CHARS: usize = 1024;

/// Countdown expression syntax tree.
#[derive(Debug)]
enum Expr {
    /// A literal; `None` when it does not fit in u128.
    Num(Option<u128>),
    /// `left op right`, op one of `+ - * /`.
    Bin(Box<Expr>, u8, Box<Expr>),
}

/// Recursive-descent parser over the countdown grammar:
/// `expr := term (('+'|'-') term)*`, `term := factor (('*'|'/') factor)*`,
/// `factor := number | '(' expr ')'`, numbers without leading zeros.
struct Parser<'a> {
    /// The expression's bytes.
    s: &'a [u8],
    /// Cursor.
    pos: usize,
}

impl Parser<'_> {
    /// The byte at the cursor.
    fn peek(&self) -> Option<u8> {
        self.s.get(self.pos).copied()
    }

    /// `expr` at the cursor.
    fn expr(&mut self) -> Option<Expr> {
        let mut left = self.term()?;
        while let Some(op @ (b'+' | b'-')) = self.peek() {
            self.pos += 1;
            left = Expr::Bin(Box::new(left), op, Box::new(self.term()?));
        }
        Some(left)
    }

    /// `term` at the cursor.
    fn term(&mut self) -> Option<Expr> {
        let mut left = self.factor()?;
        while let Some(op @ (b'*' | b'/')) = self.peek() {
            self.pos += 1;
            left = Expr::Bin(Box::new(left), op, Box::new(self.factor()?));
        }
        Some(left)
    }

    /// `factor` at the cursor.
    fn factor(&mut self) -> Option<Expr> {
        match self.peek()? {
            b'(' => {
                self.pos += 1;
                let e = self.expr()?;
                if self.peek()? != b')' {
                    return None;
                }
                self.pos += 1;
                Some(e)
            }
            b'0'..=b'9' => {
                let start = self.pos;
                while matches!(self.peek(), Some(b'0'..=b'9')) {
                    self.pos += 1;
                }
                let lit = &self.s[start..self.pos];
                if lit.len() > 1 && lit[0] == b'0' {
                    return None;
                }
                let value =
                    lit.iter().try_fold(0u128, |acc, &d| acc.checked_mul(10)?.checked_add(u128::from(d - b'0')));
                Some(Expr::Num(value))
            }
            _ => None,
        }
    }
}

/// Parses a whole expression, `None` when malformed.
fn parse_expression(text: &str) -> Option<Expr> {
    if text.len() > MAX_EXPR_CHARS {
        return None;
    }
    let mut p = Parser { s: text.as_bytes(), pos: 0 };
    let e = p.expr()?;
    (p.pos == p.s.len()).then_some(e)
}

/// Literals of an expression, left to right.
fn literals(e: &Expr, out: &mut Vec<Option<u128>>) {
    match e {
        Expr::Num(v) => out.push(*v),
        Expr::Bin(a, _, b) => {
            literals(a, out);
            literals(b, out);
        }
    }
}

/// Exact integer value of an expression (checked i128, exact division only).
fn evaluate(e: &Expr) -> Result<i128, Verdict> {
    match e {
        Expr::Num(v) => v.and_then(|v| i128::try_from(v).ok()).ok_or(Verdict::Overflow),
        Expr::Bin(a, op, b) => {
            let (a, b) = (evaluate(a)?, evaluate(b)?);
            match op {
                b'+' => a.checked_add(b).ok_or(Verdict::Overflow),
                b'-' => a.checked_sub(b).ok_or(Verdict::Overflow),
                b'*' => a.checked_mul(b).ok_or(Verdict::Overflow),
                _ => {
                    if b == 0 {
                        return Err(Verdict::BadDivision);
                    }
                    let q = a.checked_div(b).ok_or(Verdict::Overflow)?;
                    if a.checked_rem(b) != Some(0) {
                        return Err(Verdict::BadDivision);
                    }
                    Ok(q)
                }
            }
        }
    }
}

/// Scores one expression against a problem; never panics.
///
/// Checks, in order: the grammar (digits, `+ - * /`, parentheses; no unary minus, no leading
/// zeros, no spaces), that every literal is an available number (each at most its
/// multiplicity), then the exact value: integer arithmetic, division only when exact, overflow
/// of i128 reported, never wrapped. Numbers need not all be used.
pub fn check_expression(numbers: &[u64], target: u64, expr: &str) -> Verdict {
    let Some(ast) = parse_expression(expr) else {
        return Verdict::Malformed;
    };
    let mut available: HashMap<u128, usize> = HashMap::new();
    for &n in numbers {
        *available.entry(u128::from(n)).or_insert(0) += 1;
    }
    let mut lits = Vec::new();
    literals(&ast, &mut lits);
    for lit in lits {
        match lit.and_then(|v| available.get_mut(&v)) {
            Some(left) if *left > 0 => *left -= 1,
            _ => return Verdict::UnavailableNumber,
        }
    }
    match evaluate(&ast) {
        Err(v) => v,
        Ok(value) if value == i128::from(target) => Verdict::Correct,
        Ok(_) => Verdict::WrongValue,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn countdown_scorer_hand_cases() {
        let nums = [3, 7, 12, 5];
        let chk = |e: &str| check_expression(&nums, 36, e);
        assert_eq!(chk("3*12"), Verdict::Correct);
        assert_eq!(chk("12*3"), Verdict::Correct);
        assert_eq!(chk("(7-5)*12+12"), Verdict::UnavailableNumber); // 12 twice
        assert_eq!(chk("(7-5)*(3+12+3)"), Verdict::UnavailableNumber); // 3 twice
        assert_eq!(chk("7*5+1"), Verdict::UnavailableNumber); // 1 not in the list
        assert_eq!(chk("3+7"), Verdict::WrongValue);
        assert_eq!(chk("3*(12"), Verdict::Malformed);
        assert_eq!(chk("3*12)"), Verdict::Malformed);
        assert_eq!(chk(""), Verdict::Malformed);
        assert_eq!(chk("3**12"), Verdict::Malformed);
        assert_eq!(chk("03*12"), Verdict::Malformed);
        assert_eq!(chk("-3+12"), Verdict::Malformed);
        assert_eq!(chk("3 * 12"), Verdict::Malformed);
        assert_eq!(chk("3,12"), Verdict::Malformed);
        assert_eq!(chk("()"), Verdict::Malformed);
        assert_eq!(chk("12/5"), Verdict::BadDivision); // inexact
        assert_eq!(chk("(12+7-5-3)*3"), Verdict::UnavailableNumber);
        assert_eq!(chk("12*(7-5)+3*5-3"), Verdict::UnavailableNumber);
        assert_eq!(chk("(7+5)*3"), Verdict::Correct);
        assert_eq!(chk("12*(5-7)"), Verdict::WrongValue); // negative intermediates are fine
        assert_eq!(chk("12/(7-5)*(3+5)-12"), Verdict::UnavailableNumber);
        assert_eq!(check_expression(&[5, 5, 12], 1, "12/(5-5)"), Verdict::BadDivision); // by zero
        assert_eq!(check_expression(&[5, 5, 5], 2, "(5+5)/5"), Verdict::Correct);
        assert_eq!(check_expression(&[5, 5, 12], 25, "5*5"), Verdict::Correct);
        assert_eq!(check_expression(&[5, 5, 12], 125, "5*5*5"), Verdict::UnavailableNumber);
        assert_eq!(check_expression(&[6, 4, 3], 8, "6*4/3"), Verdict::Correct); // (6·4)/3 is exact
        assert_eq!(check_expression(&[6, 4, 3], 8, "6/3*4"), Verdict::Correct);
        assert_eq!(check_expression(&[7, 2, 3], 2, "7-2-3"), Verdict::Correct); // left-associative
        assert_eq!(check_expression(&[8, 4, 2], 1, "8/4/2"), Verdict::Correct);
        assert_eq!(check_expression(&[8, 4, 2], 4, "8/(4/2)"), Verdict::Correct);
        // Huge values: checked arithmetic, never a panic or a wrap.
        let big = [1 << 62; 3];
        assert_eq!(check_expression(&big, 1, "4611686018427387904*4611686018427387904"), Verdict::WrongValue);
        let cube = "4611686018427387904*4611686018427387904*4611686018427387904";
        assert_eq!(check_expression(&big, 1, cube), Verdict::Overflow); // 2^186
        let max = [u64::MAX; 2];
        assert_eq!(check_expression(&max, 1, "18446744073709551615*18446744073709551615"), Verdict::Overflow);
        assert_eq!(check_expression(&max, 0, "18446744073709551615-18446744073709551615"), Verdict::Correct);
        let long_lit = "9".repeat(60);
        assert_eq!(check_expression(&nums, 36, &long_lit), Verdict::UnavailableNumber);
        let deep = format!("{}3{}", "(".repeat(5000), ")".repeat(5000));
        assert_eq!(check_expression(&nums, 3, &deep), Verdict::Malformed); // over 1024 chars
        let nested = format!("{}3{}", "(".repeat(500), ")".repeat(500));
        assert_eq!(check_expression(&nums, 3, &nested), Verdict::Correct);
        assert_eq!(check_expression(&[1; 8], 8, "1+1+1+1+1+1+1+1"), Verdict::Correct);
        assert_eq!(check_expression(&[9999; 8], 1, &["9999"; 8].join("*")), Verdict::WrongValue);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(96))]

        /// The countdown scorer never panics on arbitrary text or numbers.
        #[test]
        fn countdown_scorer_never_panics(
            numbers in proptest::collection::vec(any::<u64>(), 0..6),
            target in any::<u64>(),
            expr in "[0-9+*/()-]{0,40}",
            junk in "\\PC{0,40}",
        ) {
            let _ = check_expression(&numbers, target, &expr);
            let _ = check_expression(&numbers, target, &junk);
        }
    }
}
