//! GGML tensor types and the dequantizers freet supports: F32, F16, BF16, Q8_0, Q4_0 and Q4_1
//! (bit-exact ports of ggml's reference `dequantize_row_*`). Every other type is named in a
//! one-line error.

use half::{bf16, f16};

/// A GGML tensor type by its on-disk id (`ggml_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GgmlType(pub u32);

/// Names of the `ggml_type` ids (gaps are ids ggml has retired).
const NAMES: [(u32, &str); 34] = [
    (0, "F32"),
    (1, "F16"),
    (2, "Q4_0"),
    (3, "Q4_1"),
    (6, "Q5_0"),
    (7, "Q5_1"),
    (8, "Q8_0"),
    (9, "Q8_1"),
    (10, "Q2_K"),
    (11, "Q3_K"),
    (12, "Q4_K"),
    (13, "Q5_K"),
    (14, "Q6_K"),
    (15, "Q8_K"),
    (16, "IQ2_XXS"),
    (17, "IQ2_XS"),
    (18, "IQ3_XXS"),
    (19, "IQ1_S"),
    (20, "IQ4_NL"),
    (21, "IQ3_S"),
    (22, "IQ2_S"),
    (23, "IQ4_XS"),
    (24, "I8"),
    (25, "I16"),
    (26, "I32"),
    (27, "I64"),
    (28, "F64"),
    (29, "IQ1_M"),
    (30, "BF16"),
    (31, "Q4_0_4_4"),
    (32, "Q4_0_4_8"),
    (33, "Q4_0_8_8"),
    (34, "TQ1_0"),
    (35, "TQ2_0"),
];

/// Elements per block of the block-quantized types freet reads.
pub const QK: usize = 32;

impl GgmlType {
    /// F32.
    pub const F32: GgmlType = GgmlType(0);
    /// F16.
    pub const F16: GgmlType = GgmlType(1);
    /// Q4_0: blocks of 32, one f16 scale, 4-bit values offset by 8.
    pub const Q4_0: GgmlType = GgmlType(2);
    /// Q4_1: blocks of 32, f16 scale and minimum, 4-bit values.
    pub const Q4_1: GgmlType = GgmlType(3);
    /// Q8_0: blocks of 32, one f16 scale, int8 values.
    pub const Q8_0: GgmlType = GgmlType(8);
    /// BF16.
    pub const BF16: GgmlType = GgmlType(30);

    /// ggml's name of the type (`"Q4_K"`), or `"type N"` for an id ggml does not define.
    pub fn name(self) -> String {
        NAMES.iter().find(|(id, _)| *id == self.0).map_or_else(|| format!("type {}", self.0), |(_, n)| n.to_string())
    }

    /// (elements per block, bytes per block) for the types freet can dequantize; `None` otherwise.
    pub fn layout(self) -> Option<(usize, usize)> {
        match self {
            GgmlType::F32 => Some((1, 4)),
            GgmlType::F16 | GgmlType::BF16 => Some((1, 2)),
            GgmlType::Q8_0 => Some((QK, 2 + QK)),
            GgmlType::Q4_0 => Some((QK, 2 + QK / 2)),
            GgmlType::Q4_1 => Some((QK, 4 + QK / 2)),
            _ => None,
        }
    }

    /// Bytes of `n` elements, or an error naming the type when it is unsupported or `n` does not
    /// fill whole blocks.
    pub fn bytes_for(self, n: usize) -> Result<usize, String> {
        let (per, bytes) = self.layout().ok_or_else(|| self.unsupported())?;
        if !n.is_multiple_of(per) {
            return Err(format!("{} elements do not fill whole {} blocks of {per}", n, self.name()));
        }
        (n / per).checked_mul(bytes).ok_or_else(|| format!("{n} elements of {} overflow", self.name()))
    }

    /// The one-line message for a type freet does not dequantize.
    pub fn unsupported(self) -> String {
        format!(
            "tensor type {} is not supported (freet dequantizes F32, F16, BF16, Q8_0, Q4_0 and Q4_1; re-export the \
             model with one of them)",
            self.name()
        )
    }
}

fn le_f16(b: &[u8]) -> f32 {
    f16::from_le_bytes([b[0], b[1]]).to_f32()
}

/// Dequantizes `bytes` (exactly [`GgmlType::bytes_for`] of the element count) to f32.
pub fn dequantize(ty: GgmlType, bytes: &[u8]) -> Result<Vec<f32>, String> {
    let (per, size) = ty.layout().ok_or_else(|| ty.unsupported())?;
    if !bytes.len().is_multiple_of(size) {
        return Err(format!("{} bytes are not whole {} blocks of {size} bytes", bytes.len(), ty.name()));
    }
    let mut out = Vec::with_capacity(bytes.len() / size * per);
    for b in bytes.chunks_exact(size) {
        match ty {
            GgmlType::F32 => out.push(f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
            GgmlType::F16 => out.push(le_f16(b)),
            GgmlType::BF16 => out.push(bf16::from_le_bytes([b[0], b[1]]).to_f32()),
            GgmlType::Q8_0 => {
                let d = le_f16(b);
                out.extend(b[2..].iter().map(|&q| f32::from(q as i8) * d));
            }
            GgmlType::Q4_0 => {
                let (d, qs) = (le_f16(b), &b[2..]);
                out.extend(qs.iter().map(|&q| (f32::from(q & 0x0f) - 8.0) * d));
                out.extend(qs.iter().map(|&q| (f32::from(q >> 4) - 8.0) * d));
            }
            GgmlType::Q4_1 => {
                let (d, m, qs) = (le_f16(b), le_f16(&b[2..]), &b[4..]);
                out.extend(qs.iter().map(|&q| f32::from(q & 0x0f) * d + m));
                out.extend(qs.iter().map(|&q| f32::from(q >> 4) * d + m));
            }
            _ => unreachable!("layout() admits only the types above"),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(x: f32) -> [u8; 2] {
        f16::from_f32(x).to_le_bytes()
    }

    #[test]
    fn f32_f16_bf16_decode_hand_values() {
        let mut b = Vec::new();
        for x in [1.0f32, -2.5, 0.0, 1e-3] {
            b.extend(x.to_le_bytes());
        }
        assert_eq!(dequantize(GgmlType::F32, &b).unwrap(), vec![1.0, -2.5, 0.0, 1e-3]);
        // 0x3c00 = 1.0, 0xc000 = -2.0, 0x3555 ≈ 0.333, 0x7bff = 65504 (largest f16).
        let f = [0x00, 0x3c, 0x00, 0xc0, 0x55, 0x35, 0xff, 0x7b];
        let v = dequantize(GgmlType::F16, &f).unwrap();
        assert_eq!(&v[..2], &[1.0, -2.0]);
        assert!((v[2] - 0.333_251_95).abs() < 1e-7, "{}", v[2]);
        assert_eq!(v[3], 65504.0);
        // bf16 is the top half of an f32: 0x3f80 = 1.0, 0xc040 = -3.0, 0x4049 ≈ 3.140625.
        let bf = [0x80, 0x3f, 0x40, 0xc0, 0x49, 0x40];
        assert_eq!(dequantize(GgmlType::BF16, &bf).unwrap(), vec![1.0, -3.0, 3.140625]);
    }

    #[test]
    fn q8_0_block_is_scale_times_int8() {
        let mut b = h(0.5).to_vec();
        b.extend((0..32).map(|i| (i as i8 - 16) as u8));
        let v = dequantize(GgmlType::Q8_0, &b).unwrap();
        assert_eq!(v.len(), 32);
        for (i, x) in v.iter().enumerate() {
            assert_eq!(*x, (i as f32 - 16.0) * 0.5);
        }
        // -128 (0x80) and 127 decode as themselves times d.
        let mut b = h(2.0).to_vec();
        b.extend([0x80u8, 0x7f].iter().chain([0u8; 30].iter()));
        let v = dequantize(GgmlType::Q8_0, &b).unwrap();
        assert_eq!((v[0], v[1]), (-256.0, 254.0));
    }

    #[test]
    fn q4_0_low_nibbles_first_then_high_offset_by_eight() {
        // Byte j holds element j in its low nibble and element j + 16 in its high nibble.
        let mut b = h(0.25).to_vec();
        b.extend((0..16u8).map(|j| (15 - j) << 4 | j));
        let v = dequantize(GgmlType::Q4_0, &b).unwrap();
        for j in 0..16 {
            assert_eq!(v[j], (j as f32 - 8.0) * 0.25, "element {j}");
            assert_eq!(v[j + 16], ((15 - j) as f32 - 8.0) * 0.25, "element {}", j + 16);
        }
    }

    #[test]
    fn q4_1_is_scale_times_nibble_plus_minimum() {
        let mut b = h(0.5).to_vec();
        b.extend(h(-1.0));
        b.extend((0..16u8).map(|j| (j ^ 5) << 4 | j));
        // A second block checks that blocks follow each other.
        b.extend(h(1.0));
        b.extend(h(3.0));
        b.extend([0xffu8; 16]);
        let v = dequantize(GgmlType::Q4_1, &b).unwrap();
        assert_eq!(v.len(), 64);
        for j in 0..16 {
            assert_eq!(v[j], j as f32 * 0.5 - 1.0);
            assert_eq!(v[j + 16], f32::from((j as u8) ^ 5) * 0.5 - 1.0);
        }
        assert!(v[32..].iter().all(|&x| x == 18.0));
    }

    #[test]
    fn unsupported_types_and_partial_blocks_are_one_line_errors() {
        let e = dequantize(GgmlType(12), &[0; 144]).unwrap_err();
        assert!(e.contains("Q4_K") && e.contains("not supported") && !e.contains('\n'), "{e}");
        assert!(GgmlType(99).unsupported().contains("type 99"));
        assert!(GgmlType::Q8_0.bytes_for(33).unwrap_err().contains("whole Q8_0 blocks"));
        assert_eq!(GgmlType::Q4_1.bytes_for(64).unwrap(), 40);
        assert_eq!(GgmlType::Q4_0.bytes_for(32).unwrap(), 18);
        assert_eq!(GgmlType::Q8_0.bytes_for(32).unwrap(), 34);
        assert!(dequantize(GgmlType::Q4_0, &[0; 19]).is_err());
    }
}
