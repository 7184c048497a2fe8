use std::time::{Duration, Instant};
use uiot::{Client, Limits, Options, QoS};
fn main() -> Result<(), uiot::Error> {
    let mut o = Options::new("127.0.0.1", 18830, "quick1");
    o.limits = Limits::unlimited();
    let c = Client::connect(o)?;
    let mut o2 = Options::new("127.0.0.1", 18830, "quick2");
    o2.limits = Limits::unlimited();
    let s = Client::connect(o2)?;
    println!("{:?}", s.subscribe(&[("a/#", QoS::AtLeastOnce)])?);
    c.publish("a/b", b"hello", QoS::AtLeastOnce)?;
    println!("{:?}", s.messages().recv_timeout(Duration::from_secs(2))?);
    let n = 100_000;
    let t = Instant::now();
    for i in 0..n {
        let _ = c.start_publish("x/y", vec![0u8; 64], QoS::AtMostOnce)?;
        let _ = i;
    }
    c.flush(Duration::from_secs(10))?;
    println!("qos0 {:.0} msg/s", n as f64 / t.elapsed().as_secs_f64());
    let n = 20_000;
    let t = Instant::now();
    for _ in 0..n {
        let _ = c.start_publish("x/y", vec![0u8; 64], QoS::AtLeastOnce)?;
    }
    c.flush(Duration::from_secs(10))?;
    println!("qos1 {:.0} msg/s", n as f64 / t.elapsed().as_secs_f64());
    let t = Instant::now();
    for _ in 0..1000 {
        c.publish("x/y", b"x", QoS::AtLeastOnce)?;
    }
    println!("qos1 rtt {:?}", t.elapsed() / 1000);
    c.disconnect()?;
    s.disconnect()?;
    Ok(())
}
