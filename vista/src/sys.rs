//! The only unsafe code of vista: marker-trait impls that let a [`PPtr`] live inside
//! persistent plain-old-data values.
#![allow(unsafe_code)]

use crate::pptr::PPtr;

// SAFETY: `PPtr<T>` is `repr(transparent)` over a `u64` (its only other field is a
// zero-sized `PhantomData`), so the all-zero pattern is a valid value (the null handle).
unsafe impl<T: ?Sized> bytemuck::Zeroable for PPtr<T> {}

// SAFETY: `repr(transparent)` over a `u64`: no padding, every bit pattern is a valid
// value (an unchecked offset: handles are validated when used, never trusted), `Copy`,
// and `'static` by the bound (`Pod` requires it).
unsafe impl<T: ?Sized + 'static> bytemuck::Pod for PPtr<T> {}
