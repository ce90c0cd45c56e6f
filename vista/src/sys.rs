//! The only unsafe code of vista: marker-trait impls that let a [`PPtr`] and the
//! collection handles ([`PVec`], [`PHashMap`]) live inside persistent plain-old-data
//! values. (`bytemuck`'s derive does not take generic types.)
#![allow(unsafe_code)]

use crate::collections::{PHashMap, PVec};
use crate::pptr::PPtr;

// SAFETY: `PPtr<T>` is `repr(transparent)` over a `u64` (its only other field is a
// zero-sized `PhantomData`), so the all-zero pattern is a valid value (the null handle).
unsafe impl<T: ?Sized> bytemuck::Zeroable for PPtr<T> {}

// SAFETY: `repr(transparent)` over a `u64`: no padding, every bit pattern is a valid
// value (an unchecked offset: handles are validated when used, never trusted), `Copy`,
// and `'static` by the bound (`Pod` requires it).
unsafe impl<T: ?Sized + 'static> bytemuck::Pod for PPtr<T> {}

// SAFETY: `PVec<T>` is `repr(transparent)` over a `u64` (its other field is a zero-sized
// `PhantomData`): the all-zero pattern is a valid value (the null handle).
unsafe impl<T> bytemuck::Zeroable for PVec<T> {}

// SAFETY: as for `PPtr`: `repr(transparent)` over a `u64`, no padding, every bit pattern
// a valid value (a handle checked when used), `Copy`, `'static` by the bound.
unsafe impl<T: 'static> bytemuck::Pod for PVec<T> {}

// SAFETY: `PHashMap<K, V>` is `repr(transparent)` over a `u64` (and a zero-sized
// `PhantomData`): the all-zero pattern is a valid value (the null handle).
unsafe impl<K, V> bytemuck::Zeroable for PHashMap<K, V> {}

// SAFETY: `repr(transparent)` over a `u64`, no padding, every bit pattern a valid value
// (a handle checked when used), `Copy`, `'static` by the bounds.
unsafe impl<K: 'static, V: 'static> bytemuck::Pod for PHashMap<K, V> {}
