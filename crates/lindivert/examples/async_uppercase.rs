//! The README's tokio example (feature `tokio`): the same job as `uppercase.rs`, with the
//! receive awaited in a task. `async_uppercase PORT COUNT` handles COUNT packets, then
//! closes the handle.
use lindivert::async_io::Async;
use lindivert::core::packet::{self, ChecksumFlags};
use lindivert::{Flags, Handle, Layer};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let port: u16 = args.next().unwrap_or_else(|| "7777".into()).parse()?;
    let count: usize = args.next().unwrap_or_else(|| "1".into()).parse()?;

    let filter = format!("outbound and udp.DstPort == {port}");
    let handle = Async::new(Handle::open(&filter, Layer::Network, 0, Flags::NONE)?)?;
    println!("ready");
    let mut buf = vec![0u8; 65575];
    for _ in 0..count {
        let (len, addr) = handle.recv(&mut buf).await?; // the task waits, the thread does not
        let pkt = &mut buf[..len];
        if let Some(mut p) = packet::parse_mut(pkt) {
            p.payload_mut().make_ascii_uppercase();
            p.calc_checksums(ChecksumFlags::NONE)?;
        }
        handle.send(pkt, &addr)?;
    }
    handle.close()?;
    Ok(())
}
