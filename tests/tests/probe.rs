use std::time::{Duration, Instant};
use pgvigil_integration::{shared_cluster, Pgvigil, PoolMode};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe() -> anyhow::Result<()> {
    let vigil = Pgvigil::builder(shared_cluster()).pool_mode(PoolMode::Session).pool_size(1).spawn().await?;
    let a = vigil.connect_app().await?;
    a.simple_query("SELECT 1").await?;
    let t = Instant::now();
    let b = vigil.connect_app().await;
    println!("connect b after {:?}: {:?}", t.elapsed(), b.as_ref().err());
    if let Ok(b) = b {
        let r = b.simple_query("SELECT 1").await;
        println!("query b after {:?}: {:?}", t.elapsed(), r.err());
    }
    println!("{}", vigil.stderr());
    let _ = Duration::from_secs(1);
    Ok(())
}
