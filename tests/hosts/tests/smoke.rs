mod common;
use common::*;

#[test]
fn smoke() {
    if skip() {
        return;
    }
    let mut t = TestLab::new("hsm", 90, None);
    let a = t.add("alpha");
    println!("{}", sh(&a, "hostname; id; ls /run; systemctl is-system-running; ps -e 2>&1 | head; ip -br addr"));
    t.destroy();
}
