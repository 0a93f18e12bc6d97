//! The clipper: cuts highlight clips out of live-stream recordings with libav (`ffmpeg-next`), in
//! process. Every libav call blocks; the service runs them on blocking threads, one clip per thread.

pub mod autoclip;
pub mod cut;
pub mod error;
mod ffi;
pub mod growing;
pub mod h264;
mod media;
pub mod moments;
pub mod probe;
pub mod retention;
pub mod rules;
pub mod thumbnail;
pub mod vertical;
pub mod worker;

pub use cut::{cut_copy, cut_exact, CutReport, Window};
pub use error::ClipError;
pub use thumbnail::{thumbnail, ThumbReport};
pub use vertical::{vertical, VerticalOptions, VerticalReport};
