//! The clipper: cuts highlight clips out of live-stream recordings with libav (`ffmpeg-next`), in
//! process. Every libav call blocks; the service runs them on blocking threads, one clip per thread.

pub mod cut;
pub mod error;
pub mod probe;
pub mod rules;
pub mod worker;

pub use cut::{cut_copy, CutReport, Window};
pub use error::ClipError;
