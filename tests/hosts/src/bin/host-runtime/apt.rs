pub fn main(_argv: &[String], _is_apt: bool) -> i32 { 0 }
