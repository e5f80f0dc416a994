//! A small GGUF (v2/v3) reader, and the writer the tests use to make GGUF files.
//!
//! Why our own: the format is a header of typed key/values and tensor descriptors followed by an
//! aligned data blob; reading it is ~200 lines. The maintained Rust reader with dequantizers is
//! candle's, a whole second tensor framework; the standalone GGUF crates are small one-person
//! crates that parse metadata only. Owning the reader lets every bound be checked, so a truncated
//! or corrupt file is a one-line error and never a panic or a huge allocation.

use crate::import::quant::{GgmlType, dequantize};
use anyhow::{Result, anyhow, bail};
use std::collections::BTreeMap;
use std::path::Path;

const MAGIC: &[u8; 4] = b"GGUF";
const DEFAULT_ALIGNMENT: usize = 32;

/// A metadata value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// Unsigned integer (u8, u16, u32, u64).
    Uint(u64),
    /// Signed integer (i8, i16, i32, i64).
    Int(i64),
    /// f32 or f64.
    Float(f64),
    /// bool.
    Bool(bool),
    /// UTF-8 string.
    Str(String),
    /// Array of values of one type.
    Array(Vec<Value>),
}

impl Value {
    /// The value as a non-negative integer, if it is one.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            Value::Uint(v) => Some(v),
            Value::Int(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }

    /// The value as a float (integers convert).
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Value::Float(v) => Some(v),
            Value::Uint(v) => Some(v as f64),
            Value::Int(v) => Some(v as f64),
            _ => None,
        }
    }

    /// The value as a string.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The value as an array.
    pub fn as_array(&self) -> Option<&[Value]> {
        match self {
            Value::Array(a) => Some(a),
            _ => None,
        }
    }
}

/// One tensor's descriptor.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorInfo {
    /// Its name (`blk.0.attn_q.weight`).
    pub name: String,
    /// Dimensions in ggml order (innermost first): the PyTorch shape reversed.
    pub dims: Vec<u64>,
    /// Its type.
    pub ty: GgmlType,
    /// Byte offset inside the data section.
    pub offset: u64,
}

impl TensorInfo {
    /// The PyTorch shape (`dims` reversed).
    pub fn shape(&self) -> Vec<i64> {
        self.dims.iter().rev().map(|&d| d as i64).collect()
    }

    /// Number of elements.
    pub fn numel(&self) -> usize {
        self.dims.iter().product::<u64>() as usize
    }
}

/// A parsed GGUF file held in memory.
#[derive(Debug)]
pub struct Gguf {
    /// Format version (2 or 3).
    pub version: u32,
    /// Metadata, by key.
    pub meta: BTreeMap<String, Value>,
    /// Tensor descriptors in file order.
    pub tensors: Vec<TensorInfo>,
    bytes: Vec<u8>,
    data_start: usize,
}

struct Cursor<'a> {
    b: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8]> {
        if self.b.len() - self.pos < n {
            bail!("truncated: {what} needs {n} bytes at offset {} but the file ends at {}", self.pos, self.b.len());
        }
        let s = &self.b[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }
    fn u32(&mut self, what: &str) -> Result<u32> {
        Ok(u32::from_le_bytes(self.take(4, what)?.try_into().expect("4 bytes")))
    }
    fn u64(&mut self, what: &str) -> Result<u64> {
        Ok(u64::from_le_bytes(self.take(8, what)?.try_into().expect("8 bytes")))
    }
    fn remaining(&self) -> usize {
        self.b.len() - self.pos
    }
    /// A count of items that each take at least `min_bytes`: larger than the rest of the file is
    /// corruption, refused before anything is allocated.
    fn count(&mut self, what: &str, min_bytes: usize) -> Result<usize> {
        let n = self.u64(what)?;
        if n > (self.remaining() / min_bytes.max(1)) as u64 {
            bail!(
                "truncated or corrupt: {what} {n} at offset {} is more than the rest of the file holds",
                self.pos - 8
            );
        }
        Ok(n as usize)
    }
    fn string(&mut self, what: &str) -> Result<String> {
        let n = self.count(what, 1)?;
        let at = self.pos;
        let raw = self.take(n, what)?;
        String::from_utf8(raw.to_vec()).map_err(|_| anyhow!("{what} at offset {at} is not UTF-8"))
    }
    fn value(&mut self, ty: u32, depth: usize) -> Result<Value> {
        let what = "metadata value";
        Ok(match ty {
            0 => Value::Uint(u64::from(self.take(1, what)?[0])),
            1 => Value::Int(i64::from(self.take(1, what)?[0] as i8)),
            2 => Value::Uint(u64::from(u16::from_le_bytes(self.take(2, what)?.try_into().expect("2")))),
            3 => Value::Int(i64::from(i16::from_le_bytes(self.take(2, what)?.try_into().expect("2")))),
            4 => Value::Uint(u64::from(self.u32(what)?)),
            5 => Value::Int(i64::from(self.u32(what)? as i32)),
            6 => Value::Float(f64::from(f32::from_bits(self.u32(what)?))),
            7 => Value::Bool(self.take(1, what)?[0] != 0),
            8 => Value::Str(self.string("string length")?),
            9 if depth < 2 => {
                let inner = self.u32("array type")?;
                let n = self.count("array length", 1)?;
                Value::Array((0..n).map(|_| self.value(inner, depth + 1)).collect::<Result<_>>()?)
            }
            10 => Value::Uint(self.u64(what)?),
            11 => Value::Int(self.u64(what)? as i64),
            12 => Value::Float(f64::from_bits(self.u64(what)?)),
            _ => bail!("corrupt metadata value type {ty} at offset {}", self.pos),
        })
    }
}

impl Gguf {
    /// Reads and parses a GGUF file; errors name the path and are one line.
    pub fn open(path: &Path) -> Result<Gguf> {
        let bytes = std::fs::read(path).map_err(|e| anyhow!("cannot read {}: {e}", path.display()))?;
        Self::parse(bytes).map_err(|e| anyhow!("{}: {e}", path.display()))
    }

    /// Parses GGUF bytes.
    pub fn parse(bytes: Vec<u8>) -> Result<Gguf> {
        let mut c = Cursor { b: &bytes, pos: 0 };
        if c.take(4, "the magic number")? != MAGIC {
            bail!("not a GGUF file (the first 4 bytes are not \"GGUF\")");
        }
        let version = c.u32("the version")?;
        if !(2..=3).contains(&version) {
            bail!("GGUF version {version} is not supported (2 and 3 are)");
        }
        let n_tensors = c.count("tensor count", 24)?;
        let n_kv = c.count("metadata count", 12)?;
        let mut meta = BTreeMap::new();
        for _ in 0..n_kv {
            let key = c.string("metadata key")?;
            let ty = c.u32("metadata type")?;
            let v = c.value(ty, 0).map_err(|e| anyhow!("metadata {key}: {e}"))?;
            meta.insert(key, v);
        }
        let tensors = (0..n_tensors).map(|_| tensor_info(&mut c)).collect::<Result<Vec<_>>>()?;
        let align = match meta.get("general.alignment") {
            None => DEFAULT_ALIGNMENT,
            Some(v) => match v.as_u64() {
                Some(a) if a > 0 && a.is_power_of_two() && a <= 1 << 16 => a as usize,
                _ => bail!("general.alignment {v:?} is not a power of two"),
            },
        };
        let data_start = c.pos.div_ceil(align) * align;
        let g = Gguf { version, meta, tensors, bytes, data_start };
        for t in &g.tensors {
            if t.ty.layout().is_some() {
                g.extent(t)?;
            }
        }
        Ok(g)
    }

    /// Byte range of a tensor's data, checked against the file.
    fn extent(&self, t: &TensorInfo) -> Result<std::ops::Range<usize>> {
        let n = t.numel();
        let len = t.ty.bytes_for(n).map_err(|e| anyhow!("tensor {}: {e}", t.name))?;
        let start = self.data_start as u64 + t.offset;
        let end = start + len as u64;
        if end > self.bytes.len() as u64 {
            bail!("truncated: tensor {} needs bytes {start}..{end} but the file ends at {}", t.name, self.bytes.len());
        }
        Ok(start as usize..end as usize)
    }

    /// A metadata value.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.meta.get(key)
    }

    /// A tensor's descriptor.
    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.tensors.iter().find(|t| t.name == name)
    }

    /// A tensor dequantized to f32, with its PyTorch shape.
    pub fn tensor_f32(&self, name: &str) -> Result<(Vec<f32>, Vec<i64>)> {
        let t = self.tensor(name).ok_or_else(|| anyhow!("missing tensor {name}"))?;
        if t.ty.layout().is_none() {
            bail!("tensor {name}: {}", t.ty.unsupported());
        }
        let range = self.extent(t)?;
        let v = dequantize(t.ty, &self.bytes[range]).map_err(|e| anyhow!("tensor {name}: {e}"))?;
        Ok((v, t.shape()))
    }
}

fn tensor_info(c: &mut Cursor) -> Result<TensorInfo> {
    let name = c.string("tensor name")?;
    let n_dims = c.u32("tensor rank")?;
    if !(1..=4).contains(&n_dims) {
        bail!("tensor {name}: rank {n_dims} is outside 1..=4");
    }
    let dims = (0..n_dims).map(|_| c.u64("tensor dimension")).collect::<Result<Vec<_>>>()?;
    if dims.iter().try_fold(1u64, |acc, &d| acc.checked_mul(d)).is_none_or(|n| n > 1 << 40) {
        bail!("tensor {name}: dimensions {dims:?} are corrupt");
    }
    let ty = GgmlType(c.u32("tensor type")?);
    let offset = c.u64("tensor offset")?;
    Ok(TensorInfo { name, dims, ty, offset })
}

/// Builds GGUF v3 files: used by the tests and their fixtures.
#[derive(Debug, Default)]
pub struct GgufWriter {
    meta: Vec<(String, Value)>,
    tensors: Vec<(String, Vec<u64>, GgmlType, Vec<u8>)>,
}

impl GgufWriter {
    /// Adds a metadata key (integers are written as u32/i32 when they fit, else 64-bit).
    pub fn meta(&mut self, key: &str, v: Value) -> &mut Self {
        self.meta.push((key.to_string(), v));
        self
    }

    /// Adds a tensor: PyTorch `shape`, raw `data` of type `ty`.
    pub fn tensor(&mut self, name: &str, shape: &[i64], ty: GgmlType, data: Vec<u8>) -> &mut Self {
        self.tensors.push((name.to_string(), shape.iter().rev().map(|&d| d as u64).collect(), ty, data));
        self
    }

    /// Adds an f32 tensor.
    pub fn tensor_f32(&mut self, name: &str, shape: &[i64], data: &[f32]) -> &mut Self {
        self.tensor(name, shape, GgmlType::F32, data.iter().flat_map(|x| x.to_le_bytes()).collect())
    }

    /// The file's bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend(MAGIC);
        b.extend(3u32.to_le_bytes());
        b.extend((self.tensors.len() as u64).to_le_bytes());
        b.extend((self.meta.len() as u64).to_le_bytes());
        for (k, v) in &self.meta {
            put_str(&mut b, k);
            put_value(&mut b, v, true);
        }
        let mut offset = 0u64;
        let mut offsets = Vec::new();
        for (name, dims, ty, data) in &self.tensors {
            put_str(&mut b, name);
            b.extend((dims.len() as u32).to_le_bytes());
            for d in dims {
                b.extend(d.to_le_bytes());
            }
            b.extend(ty.0.to_le_bytes());
            b.extend(offset.to_le_bytes());
            offsets.push(offset);
            offset = (offset + data.len() as u64).div_ceil(DEFAULT_ALIGNMENT as u64) * DEFAULT_ALIGNMENT as u64;
        }
        let data_start = b.len().div_ceil(DEFAULT_ALIGNMENT) * DEFAULT_ALIGNMENT;
        for ((_, _, _, data), off) in self.tensors.iter().zip(offsets) {
            b.resize(data_start + off as usize, 0);
            b.extend(data);
        }
        b
    }
}

fn put_str(b: &mut Vec<u8>, s: &str) {
    b.extend((s.len() as u64).to_le_bytes());
    b.extend(s.as_bytes());
}

fn value_type(v: &Value) -> u32 {
    match v {
        Value::Uint(x) if *x <= u64::from(u32::MAX) => 4,
        Value::Uint(_) => 10,
        Value::Int(x) if i32::try_from(*x).is_ok() => 5,
        Value::Int(_) => 11,
        Value::Float(_) => 6,
        Value::Bool(_) => 7,
        Value::Str(_) => 8,
        Value::Array(_) => 9,
    }
}

fn put_value(b: &mut Vec<u8>, v: &Value, with_type: bool) {
    let ty = value_type(v);
    if with_type {
        b.extend(ty.to_le_bytes());
    }
    match v {
        Value::Uint(x) if ty == 4 => b.extend((*x as u32).to_le_bytes()),
        Value::Uint(x) => b.extend(x.to_le_bytes()),
        Value::Int(x) if ty == 5 => b.extend((*x as i32).to_le_bytes()),
        Value::Int(x) => b.extend(x.to_le_bytes()),
        Value::Float(x) => b.extend((*x as f32).to_le_bytes()),
        Value::Bool(x) => b.push(u8::from(*x)),
        Value::Str(s) => put_str(b, s),
        Value::Array(items) => {
            let inner = items.first().map_or(8, value_type);
            b.extend(inner.to_le_bytes());
            b.extend((items.len() as u64).to_le_bytes());
            for it in items {
                put_value(b, it, false);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<u8> {
        let mut w = GgufWriter::default();
        w.meta("general.architecture", Value::Str("llama".into()))
            .meta("llama.block_count", Value::Uint(2))
            .meta("llama.rope.freq_base", Value::Float(10000.0))
            .meta("tokenizer.ggml.tokens", Value::Array(vec![Value::Str("a".into()), Value::Str("Ġb".into())]))
            .meta("flag", Value::Bool(true))
            .meta("neg", Value::Int(-3))
            .tensor_f32("a.weight", &[2, 3], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
            .tensor_f32("b.weight", &[3], &[7.0, 8.0, 9.0]);
        w.to_bytes()
    }

    #[test]
    fn round_trips_metadata_and_tensors() {
        let g = Gguf::parse(sample()).unwrap();
        assert_eq!(g.version, 3);
        assert_eq!(g.get("general.architecture").and_then(Value::as_str), Some("llama"));
        assert_eq!(g.get("llama.block_count").and_then(Value::as_u64), Some(2));
        assert_eq!(g.get("llama.rope.freq_base").and_then(Value::as_f64), Some(10000.0));
        assert_eq!(g.get("neg"), Some(&Value::Int(-3)));
        assert_eq!(g.get("flag"), Some(&Value::Bool(true)));
        assert_eq!(g.get("tokenizer.ggml.tokens").and_then(Value::as_array).map(<[Value]>::len), Some(2));
        let t = g.tensor("a.weight").unwrap();
        assert_eq!(t.dims, vec![3, 2], "ggml order is innermost first");
        assert_eq!(t.shape(), vec![2, 3]);
        assert_eq!(g.tensor_f32("a.weight").unwrap().0, vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        assert_eq!(g.tensor_f32("b.weight").unwrap(), (vec![7.0, 8.0, 9.0], vec![3]));
        assert!(g.tensor_f32("c.weight").unwrap_err().to_string().contains("missing tensor c.weight"));
    }

    #[test]
    fn every_truncation_is_a_one_line_error() {
        let full = sample();
        for cut in 0..full.len() {
            // Trailing alignment padding after the last tensor may be cut without losing data.
            let Err(e) = Gguf::parse(full[..cut].to_vec()) else { continue };
            let msg = e.to_string();
            assert!(!msg.contains('\n'), "cut {cut}: {msg}");
            assert!(
                msg.contains("truncated") || msg.contains("corrupt") || msg.contains("not a GGUF"),
                "cut {cut}: {msg}"
            );
        }
        let msg = Gguf::parse(full[..full.len() - 40].to_vec()).unwrap_err().to_string();
        assert!(msg.contains("truncated: tensor"), "{msg}");
    }

    #[test]
    fn bad_magic_version_and_counts_are_refused() {
        let mut b = sample();
        b[0] = b'X';
        assert!(Gguf::parse(b).unwrap_err().to_string().contains("not a GGUF"));
        let mut b = sample();
        b[4] = 1;
        assert!(Gguf::parse(b).unwrap_err().to_string().contains("version 1"));
        let mut b = sample();
        b[8..16].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(Gguf::parse(b).unwrap_err().to_string().contains("corrupt: tensor count"));
    }

    #[test]
    fn unsupported_type_is_named_when_the_tensor_is_read() {
        let mut w = GgufWriter::default();
        w.tensor("q.weight", &[1, 256], GgmlType(12), vec![0; 144]);
        let g = Gguf::parse(w.to_bytes()).unwrap();
        let msg = g.tensor_f32("q.weight").unwrap_err().to_string();
        assert!(msg.contains("q.weight") && msg.contains("Q4_K") && msg.contains("not supported"), "{msg}");
    }
}
