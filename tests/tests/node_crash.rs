//! Durability and process life: a `veild` killed with SIGKILL and restarted still serves
//! every block it acknowledged; SIGTERM stops it cleanly.

use veil_tests::{random_block, DataDir, VeildProcess};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_blocks_survive_sigkill() -> anyhow::Result<()> {
    let dir = DataDir::new()?;
    let node = VeildProcess::spawn(dir.path(), &[]).await?;
    let identity = std::fs::read(dir.path().join("identity"))?;
    let blocks: Vec<_> = (0..8).map(|i| random_block(100 + i, 1000)).collect();
    // Concurrent puts share commits; each is acknowledged only once durable.
    let mut puts = tokio::task::JoinSet::new();
    for (k, b) in blocks.clone() {
        let api = node.api.clone();
        puts.spawn(async move { api.put_block(&k, &b, Some(0)).await });
    }
    while let Some(r) = puts.join_next().await {
        r??;
    }
    node.kill()?;

    let node = VeildProcess::spawn(dir.path(), &[]).await?;
    assert_eq!(std::fs::read(dir.path().join("identity"))?, identity);
    for (k, b) in &blocks {
        assert_eq!(&node.api.get_block(k, Some(0)).await?, b);
    }
    // A second veild on the same data directory says what is wrong and exits 1.
    let second = std::process::Command::new(veil_tests::veild_path()?)
        .arg("--data-dir")
        .arg(dir.path())
        .args(["--listen", "127.0.0.1:0", "--api", "127.0.0.1:0"])
        .output()?;
    assert_eq!(second.status.code(), Some(1));
    let err = String::from_utf8_lossy(&second.stderr);
    assert!(err.contains("another veild is already running"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    // The running node's ready files are untouched by the failed start...
    assert!(dir.path().join("address").exists() && dir.path().join("api").exists());
    let status = node.terminate()?;
    assert!(status.success(), "veild exited with {status}");
    // ...and a clean stop takes them back: their presence means ready.
    assert!(!dir.path().join("address").exists());
    assert!(!dir.path().join("api").exists());
    Ok(())
}
