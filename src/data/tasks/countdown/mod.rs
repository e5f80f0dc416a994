//! `countdown`: numbers and a target; the completion is an arithmetic expression reaching the
//! target. Exact integer scorer, pass@k and the number of distinct valid answers.

mod expr;

use std::collections::HashSet;

use rand::Rng;
use serde::{Deserialize, Serialize};

pub use self::expr::check_expression;
use super::numerics::{example_rng, train_rng};
use super::{TaskError, check_range};
use crate::data::Split;
use crate::data::tokenizer::alphabet::{PAD, TaskAlphabet};
use crate::util::error::{FieldError, value_err};

/// Random trees tried per countdown example before falling back to a single number.
const COUNTDOWN_ATTEMPTS: usize = 256;

/// Parameters of the `countdown` task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CountdownSpec {
    /// Numbers per problem (1..=8).
    #[serde(default = "default_n_numbers")]
    pub n_numbers: usize,
    /// Numbers are drawn uniformly from 1..=max_number (1..=9999).
    #[serde(default = "default_max_number")]
    pub max_number: u64,
    /// Targets lie in 1..=max_target (max_number..=999999).
    #[serde(default = "default_max_target")]
    pub max_target: u64,
}

fn default_n_numbers() -> usize {
    4
}
fn default_max_number() -> u64 {
    20
}
fn default_max_target() -> u64 {
    100
}

/// Number of decimal digits of `v`.
fn digits(mut v: u64) -> usize {
    let mut d = 1;
    while v >= 10 {
        v /= 10;
        d += 1;
    }
    d
}

impl CountdownSpec {
    /// Checks every parameter range, naming the field at fault.
    pub fn validate(&self) -> Result<(), FieldError> {
        check_range("data.n_numbers", self.n_numbers, 1, 8)?;
        check_range("data.max_number", self.max_number, 1, 9999)?;
        if self.max_target < self.max_number || self.max_target > 999_999 {
            return Err(value_err(
                "data.max_target",
                format!(
                    "{} is outside max_number..=999999 = {}..=999999 (a single number must always be a valid answer)",
                    self.max_target, self.max_number
                ),
            ));
        }
        Ok(())
    }

    /// Characters of the (left-padded) prompt: `n1,n2,…,nN=T:` at the widest.
    pub(super) fn prompt_len(&self) -> usize {
        let n = self.n_numbers;
        n * digits(self.max_number) + (n - 1) + 1 + digits(self.max_target) + 1
    }

    /// Characters of the (right-padded) completion: the longest expression the generator writes.
    pub(super) fn completion_len(&self) -> usize {
        let n = self.n_numbers;
        // N numbers, N − 1 operators, and at most one pair of parentheses per non-root inner node.
        n * digits(self.max_number) + (n - 1) + 2 * n.saturating_sub(2)
    }
}

/// One countdown problem: a multiset of numbers and a target.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CountdownProblem {
    /// The numbers, in prompt order (each usable at most as often as it appears).
    pub numbers: Vec<u64>,
    /// The value to reach.
    pub target: u64,
}

/// A generated countdown example: the problem and the training expression that solves it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CountdownExample {
    /// The problem shown in the prompt.
    pub problem: CountdownProblem,
    /// The training completion, without padding.
    pub expression: String,
}

/// The scorer's verdict on one countdown completion.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Well formed, uses available numbers only, and equals the target.
    Correct,
    /// Not an expression of the grammar (or empty, or over 1024 characters).
    Malformed,
    /// Uses a number absent from the problem, or more often than it appears.
    UnavailableNumber,
    /// Divides by zero or divides inexactly.
    BadDivision,
    /// An intermediate value leaves the i128 range.
    Overflow,
    /// Evaluates to a value other than the target.
    WrongValue,
}

impl Verdict {
    /// Whether the verdict is [`Verdict::Correct`].
    pub fn is_correct(self) -> bool {
        self == Verdict::Correct
    }
}

/// Unbiased pass@k from `n` samples of which `c` are correct: `1 − C(n−c, k) / C(n, k)`.
///
/// `None` unless `1 ≤ k ≤ n` and `c ≤ n`.
pub fn pass_at_k(n: usize, c: usize, k: usize) -> Option<f64> {
    if k == 0 || k > n || c > n {
        return None;
    }
    if n - c < k {
        return Some(1.0);
    }
    // C(n−c, k) / C(n, k) = Π_{i = n−c+1}^{n} (1 − k / i).
    Some(1.0 - (n - c + 1..=n).map(|i| 1.0 - k as f64 / i as f64).product::<f64>())
}

/// A node of a generated expression tree: its value, text and precedence (3 literal, 2 `* /`, 1 `+ -`).
struct Node {
    /// Exact value (always a positive integer).
    value: u128,
    /// Text with minimal parentheses.
    text: String,
    /// Precedence of the top operator.
    prec: u8,
}

impl Node {
    /// `a op b`, parenthesising operands only where precedence or (for `-` and `/`) order needs it.
    fn combine(a: Node, op: u8, b: Node, value: u128) -> Node {
        let p = if matches!(op, b'*' | b'/') { 2 } else { 1 };
        let left = if a.prec < p { format!("({})", a.text) } else { a.text };
        let right_needs = b.prec < p || (b.prec == p && matches!(op, b'-' | b'/'));
        let right = if right_needs { format!("({})", b.text) } else { b.text };
        Node { value, text: format!("{left}{}{right}", char::from(op)), prec: p }
    }
}

/// Countdown-style arithmetic: reach the target with `+ - * /` and parentheses.
///
/// Format: prompt `n1,n2,…,nN=T:` left-padded with [`PAD`] to `prompt_len`; completion an
/// expression right-padded with [`PAD`]. Draw order of one example (a spec): N numbers
/// `random_range(1..=M)`; then up to 256 attempts, each drawing a subset size
/// `random_range(min(2, N)..=N)`, a partial Fisher–Yates subset, and a random tree that combines
/// two random nodes at a time with an operator drawn among those keeping every intermediate a
/// positive integer (`-` only when a > b, `/` only when exact). The first attempt with target
/// ≤ max_target wins; if none does, a single random number is the answer.
#[derive(Debug, Clone)]
pub struct Countdown {
    /// Run seed of the example streams.
    seed: u64,
    /// The parameters.
    spec: CountdownSpec,
}

impl Countdown {
    /// Builds the task from `spec` (validated first); `seed` keys the example streams.
    pub fn new(spec: &CountdownSpec, seed: u64) -> Result<Self, FieldError> {
        spec.validate()?;
        Ok(Self { seed, spec: spec.clone() })
    }

    /// The parameters.
    pub fn spec(&self) -> &CountdownSpec {
        &self.spec
    }

    /// Prompt characters (and tokens).
    pub fn prompt_len(&self) -> usize {
        self.spec.prompt_len()
    }

    /// Completion characters (and tokens).
    pub fn completion_len(&self) -> usize {
        self.spec.completion_len()
    }

    /// Tokens per sequence.
    pub fn seq_len(&self) -> usize {
        self.prompt_len() + self.completion_len()
    }

    /// Draws one problem and its training expression.
    pub fn sample<R: Rng + ?Sized>(&self, rng: &mut R) -> CountdownExample {
        let n = self.spec.n_numbers;
        let numbers: Vec<u64> = (0..n).map(|_| rng.random_range(1..=self.spec.max_number)).collect();
        for _ in 0..COUNTDOWN_ATTEMPTS {
            let size = rng.random_range(n.min(2) as u32..=n as u32) as usize;
            let mut idx: Vec<usize> = (0..n).collect();
            for i in 0..size {
                let j = rng.random_range(i as u32..n as u32) as usize;
                idx.swap(i, j);
            }
            let mut nodes: Vec<Node> = idx[..size]
                .iter()
                .map(|&i| Node { value: u128::from(numbers[i]), text: numbers[i].to_string(), prec: 3 })
                .collect();
            while nodes.len() > 1 {
                let a = nodes.swap_remove(rng.random_range(0..nodes.len() as u32) as usize);
                let b = nodes.swap_remove(rng.random_range(0..nodes.len() as u32) as usize);
                let mut ops: Vec<(u8, u128)> = vec![(b'+', a.value + b.value)];
                if let Some(v) = a.value.checked_mul(b.value) {
                    ops.push((b'*', v));
                }
                if a.value > b.value {
                    ops.push((b'-', a.value - b.value));
                }
                if a.value.is_multiple_of(b.value) {
                    ops.push((b'/', a.value / b.value));
                }
                let (op, value) = ops[rng.random_range(0..ops.len() as u32) as usize];
                nodes.push(Node::combine(a, op, b, value));
            }
            let root = nodes.swap_remove(0);
            if root.value <= u128::from(self.spec.max_target) {
                let problem = CountdownProblem { numbers, target: root.value as u64 };
                return CountdownExample { problem, expression: root.text };
            }
        }
        let pick = numbers[rng.random_range(0..n as u32) as usize];
        CountdownExample { problem: CountdownProblem { numbers, target: pick }, expression: pick.to_string() }
    }

    /// Example `index` of `split`.
    pub fn example(&self, split: Split, index: u64) -> CountdownExample {
        self.sample(&mut example_rng(self.seed, split, index))
    }

    /// Training row (step, micro, row).
    pub fn train_example(&self, step: u64, micro: u64, row: u64) -> CountdownExample {
        self.sample(&mut train_rng(self.seed, step, micro, row))
    }

    /// The prompt text of a problem within the task's ranges, left-padded to `prompt_len`.
    pub fn prompt_text(&self, problem: &CountdownProblem) -> Result<String, TaskError> {
        let s = &self.spec;
        let ok = problem.numbers.len() == s.n_numbers
            && problem.numbers.iter().all(|&x| (1..=s.max_number).contains(&x))
            && (1..=s.max_target).contains(&problem.target);
        if !ok {
            return Err(TaskError::MalformedPrompt(format!("problem {problem:?} is outside the task's ranges")));
        }
        let nums: Vec<String> = problem.numbers.iter().map(u64::to_string).collect();
        let body = format!("{}={}:", nums.join(","), problem.target);
        Ok(format!("{}{body}", PAD.to_string().repeat(self.prompt_len() - body.len())))
    }

    /// The token ids of a generated example: padded prompt then padded expression.
    pub fn example_ids_of(&self, ex: &CountdownExample) -> Vec<u32> {
        let prompt = self.prompt_text(&ex.problem).unwrap_or_default();
        let pad = self.completion_len().saturating_sub(ex.expression.len());
        let text = format!("{prompt}{}{}", ex.expression, PAD.to_string().repeat(pad));
        TaskAlphabet::Arithmetic.encode(&text).unwrap_or_default()
    }

    /// Parses a prompt (exactly `prompt_len` tokens) back into its problem.
    pub fn parse_prompt(&self, prompt: &[u32]) -> Result<CountdownProblem, TaskError> {
        let bad = |m: String| TaskError::MalformedPrompt(m);
        if prompt.len() != self.prompt_len() {
            return Err(bad(format!("{} tokens, expected {}", prompt.len(), self.prompt_len())));
        }
        let text = TaskAlphabet::Arithmetic.decode(prompt).map_err(|e| bad(e.to_string()))?;
        let body = text.trim_start_matches(PAD);
        let (lhs, target) = body
            .strip_suffix(':')
            .and_then(|b| b.split_once('='))
            .ok_or_else(|| bad(format!("'{text}' is not 'n1,…,nN=T:'")))?;
        let number = |t: &str, max: u64| -> Option<u64> {
            let canonical = !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) && !t.starts_with('0');
            canonical.then(|| t.parse().ok()).flatten().filter(|v| (1..=max).contains(v))
        };
        let numbers: Option<Vec<u64>> = lhs.split(',').map(|t| number(t, self.spec.max_number)).collect();
        let numbers = numbers.filter(|v| v.len() == self.spec.n_numbers).ok_or_else(|| {
            bad(format!("'{lhs}' is not {} numbers in 1..={}", self.spec.n_numbers, self.spec.max_number))
        })?;
        let target = number(target, self.spec.max_target)
            .ok_or_else(|| bad(format!("target '{target}' is not in 1..={}", self.spec.max_target)))?;
        Ok(CountdownProblem { numbers, target })
    }

    /// The expression text of a completion: characters up to the first pad (the rest is ignored).
    ///
    /// `None` when an id before the first pad is outside the alphabet.
    pub fn completion_expression(completion: &[u32]) -> Option<String> {
        let pad = TaskAlphabet::Arithmetic.id_of(PAD)?;
        completion.iter().take_while(|&&id| id != pad).map(|&id| TaskAlphabet::Arithmetic.char_of(id)).collect()
    }

    /// Scores a completion against the problem in `prompt` (a malformed prompt is an error).
    pub fn score(&self, prompt: &[u32], completion: &[u32]) -> Result<Verdict, TaskError> {
        let problem = self.parse_prompt(prompt)?;
        Ok(match Self::completion_expression(completion) {
            Some(expr) => check_expression(&problem.numbers, problem.target, &expr),
            None => Verdict::Malformed,
        })
    }

    /// Number of distinct correct expressions (texts up to the first pad) among `completions`.
    pub fn distinct_valid<S: AsRef<[u32]>>(&self, prompt: &[u32], completions: &[S]) -> Result<usize, TaskError> {
        let problem = self.parse_prompt(prompt)?;
        let correct: HashSet<String> = completions
            .iter()
            .filter_map(|c| Self::completion_expression(c.as_ref()))
            .filter(|e| check_expression(&problem.numbers, problem.target, e).is_correct())
            .collect();
        Ok(correct.len())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::data::tasks::Task;
    use std::collections::HashMap;

    /// The countdown task of the tests: 4 numbers ≤ 20, targets ≤ 100.
    pub(crate) fn countdown(seed: u64) -> Countdown {
        Countdown::new(&CountdownSpec { n_numbers: 4, max_number: 20, max_target: 100 }, seed).unwrap()
    }

    #[test]
    fn countdown_training_examples_all_score_correct() {
        let t = countdown(17);
        let task = Task::Countdown(t.clone());
        // 4 numbers ≤ 20 (2 digits), target ≤ 100 (3 digits): prompt 4·2+3+1+3+1 = 16, completion 4·2+3+4 = 15.
        assert_eq!((t.prompt_len(), t.completion_len(), task.seq_len(), task.vocab_size()), (16, 15, 31, 20));
        let (mut used, mut parens, mut seen) = (0usize, 0usize, HashSet::new());
        let mut ops = HashMap::new();
        let n = 3000;
        for i in 0..n {
            let ex = t.example(Split::Train, i);
            let ids = task.example_ids(Split::Train, i);
            assert_eq!(ids, t.example_ids_of(&ex));
            assert_eq!(ids.len(), 31);
            let (prompt, completion) = task.split(&ids);
            assert_eq!(t.parse_prompt(prompt).unwrap(), ex.problem);
            assert_eq!(t.score(prompt, completion).unwrap(), Verdict::Correct, "{}", task.decode(&ids).unwrap());
            assert!(task.score(prompt, completion).unwrap());
            assert!((1..=100).contains(&ex.problem.target));
            assert!(ex.problem.numbers.iter().all(|&x| (1..=20).contains(&x)));
            assert_eq!(Countdown::completion_expression(completion).unwrap(), ex.expression);
            let text = task.decode(&ids).unwrap();
            assert!(text.ends_with(PAD) || ex.expression.len() == 15, "{text}");
            used += ex.expression.split(|c: char| !c.is_ascii_digit()).filter(|s| !s.is_empty()).count();
            parens += usize::from(ex.expression.contains('('));
            for c in ex.expression.chars().filter(|c| "+-*/".contains(*c)) {
                *ops.entry(c).or_insert(0usize) += 1;
            }
            seen.insert(ids);
        }
        // Not degenerate: several numbers per answer, every operator, nested forms, varied problems.
        assert!(used as f64 / n as f64 > 2.0, "{used}");
        assert!(parens > n as usize / 20, "{parens}");
        assert!(ops.len() == 4 && ops.values().all(|&c| c > 100), "{ops:?}");
        assert!(seen.len() > n as usize * 95 / 100, "{}", seen.len());
        assert_eq!(t.example(Split::Val, 4), countdown(17).example(Split::Val, 4));
        assert_eq!(task.train_ids(2, 0, 1), t.example_ids_of(&t.train_example(2, 0, 1)));
        assert_eq!(task.bayes_nll_nats(&ids_of(&task, "..1,2,3,4=5:2+3")), Err(TaskError::NoBayes("countdown")));
    }

    fn ids_of(task: &Task, s: &str) -> Vec<u32> {
        task.encode(s).unwrap()
    }

    #[test]
    fn countdown_extreme_specs_generate_valid_examples() {
        for spec in [
            CountdownSpec { n_numbers: 1, max_number: 1, max_target: 1 },
            CountdownSpec { n_numbers: 8, max_number: 9999, max_target: 999_999 },
            CountdownSpec { n_numbers: 8, max_number: 9999, max_target: 9999 },
            CountdownSpec { n_numbers: 2, max_number: 3, max_target: 3 },
        ] {
            let t = Countdown::new(&spec, 1).unwrap();
            let task = Task::Countdown(t.clone());
            for i in 0..200 {
                let ids = task.example_ids(Split::Val, i);
                assert_eq!(ids.len(), task.seq_len());
                let (p, c) = task.split(&ids);
                assert_eq!(t.score(p, c).unwrap(), Verdict::Correct, "{spec:?}: {}", task.decode(&ids).unwrap());
            }
        }
    }

    #[test]
    fn countdown_scores_token_completions() {
        let t = countdown(0);
        let task = Task::Countdown(t.clone());
        let prompt = ids_of(&task, "....3,7,12,5=36:");
        assert_eq!(t.parse_prompt(&prompt).unwrap(), CountdownProblem { numbers: vec![3, 7, 12, 5], target: 36 });
        let s = |c: &str| t.score(&prompt, &ids_of(&task, c)).unwrap();
        assert_eq!(s("3*12..........."), Verdict::Correct);
        assert_eq!(s("3*12.+5+5+5+5.."), Verdict::Correct); // text after the first pad is ignored
        assert_eq!(s("3*12"), Verdict::Correct);
        assert_eq!(s("..............."), Verdict::Malformed);
        assert_eq!(s("3*12=36........"), Verdict::Malformed);
        assert_eq!(t.score(&prompt, &[1, 30]).unwrap(), Verdict::Malformed); // id out of range
        assert!(!task.score(&prompt, &ids_of(&task, "3+7")).unwrap());
        // Malformed prompts are errors.
        for bad in ["3,7,12,5=36:....", "....3,7,12,5=36.", "..3,7,12,5,1=36:", ".....3,7,12,5:36", "...3,7,12,25=36:"]
        {
            let ids = ids_of(&task, bad);
            assert!(matches!(t.parse_prompt(&ids), Err(TaskError::MalformedPrompt(_))), "{bad}");
        }
        assert!(t.parse_prompt(&ids_of(&task, "....3,7,12,5=36")).is_err()); // wrong length
        assert!(t.parse_prompt(&ids_of(&task, "...03,7,12,5=36:")).is_err()); // leading zero
        assert!(t.parse_prompt(&ids_of(&task, "...3,7,12,5=101:")).is_err()); // target too large
        let problem = CountdownProblem { numbers: vec![3, 7, 12, 5], target: 36 };
        assert_eq!(t.prompt_text(&problem).unwrap(), "....3,7,12,5=36:");
        assert!(t.prompt_text(&CountdownProblem { numbers: vec![3], target: 3 }).is_err());
    }

    #[test]
    fn pass_at_k_matches_hand_values() {
        let close = |a: Option<f64>, b: f64| (a.unwrap() - b).abs() < 1e-12;
        assert!(close(pass_at_k(5, 2, 1), 0.4));
        assert!(close(pass_at_k(5, 2, 5), 1.0));
        assert!(close(pass_at_k(5, 2, 3), 1.0 - 1.0 / 10.0)); // 1 − C(3,3)/C(5,3)
        assert!(close(pass_at_k(10, 3, 4), 1.0 - 35.0 / 210.0)); // 1 − C(7,4)/C(10,4)
        assert!(close(pass_at_k(10, 0, 4), 0.0));
        assert!(close(pass_at_k(10, 10, 1), 1.0));
        assert!(close(pass_at_k(200, 13, 1), 13.0 / 200.0));
        assert_eq!(pass_at_k(5, 2, 0), None);
        assert_eq!(pass_at_k(5, 2, 6), None);
        assert_eq!(pass_at_k(5, 6, 1), None);
    }

    #[test]
    fn distinct_valid_counts_distinct_correct_texts() {
        let t = countdown(0);
        let task = Task::Countdown(t.clone());
        let prompt = ids_of(&task, "....3,7,12,5=36:");
        let comps: Vec<Vec<u32>> = ["3*12...", "12*3...", "3*12.....", "3+7..", "(7+5)*3", "12+12+12", "3*12.5"]
            .iter()
            .map(|c| ids_of(&task, c))
            .collect();
        assert_eq!(t.distinct_valid(&prompt, &comps).unwrap(), 3);
        assert_eq!(t.distinct_valid(&prompt, &Vec::<Vec<u32>>::new()).unwrap(), 0);
        assert!(t.distinct_valid(&[0], &comps).is_err());
    }
}
