//! An owned tensor: a flat `f32` buffer and its shape, row-major (NCHW for images).

use crate::error::{Error, Result};

/// An owned, row-major `f32` tensor.
///
/// ```
/// use cnnkit::Tensor;
/// let t = Tensor::from_vec(vec![2, 3], (0..6).map(|i| i as f32).collect()).unwrap();
/// assert_eq!(t.shape(), &[2, 3]);
/// assert_eq!(t.data()[4], 4.0);
/// assert!(Tensor::from_vec(vec![2, 2], vec![0.0; 3]).is_err());
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    shape: Vec<usize>,
    data: Vec<f32>,
}

/// The product of `shape`, or an error on overflow.
pub fn numel(shape: &[usize]) -> Result<usize> {
    shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| Error::invalid(format!("shape {shape:?} overflows usize")))
}

impl Tensor {
    /// A tensor of zeros.
    ///
    /// # Errors
    /// When the element count overflows.
    pub fn zeros(shape: Vec<usize>) -> Result<Self> {
        let n = numel(&shape)?;
        Ok(Tensor {
            shape,
            data: vec![0.0; n],
        })
    }

    /// Wraps `data`, which must hold exactly `shape`'s product of elements.
    ///
    /// # Errors
    /// When the lengths disagree.
    pub fn from_vec(shape: Vec<usize>, data: Vec<f32>) -> Result<Self> {
        let n = numel(&shape)?;
        if n != data.len() {
            return Err(Error::invalid(format!(
                "shape {shape:?} needs {n} elements, got {}",
                data.len()
            )));
        }
        Ok(Tensor { shape, data })
    }

    /// The shape.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// The elements, row-major.
    pub fn data(&self) -> &[f32] {
        &self.data
    }

    /// The elements, mutable.
    pub fn data_mut(&mut self) -> &mut [f32] {
        &mut self.data
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.data.len()
    }

    /// True when the tensor holds no elements.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// The buffer, giving up the shape.
    pub fn into_vec(self) -> Vec<f32> {
        self.data
    }
}
