//! Reference model of the reservation step (placeholder while it is written).
