//! Benchmark: the pages' use cases at a company's size. 10,000 people, 100,000 requests
//! (each decided, each with a grant that ended) on SQLite; then, alternating, the "My
//! access" use case (`Portal::my_access`) for a random person against a bare reference
//! that runs only the two queries the page's rows come from (the person's requests and
//! grants) and assembles nothing. Prints p50/p99 of each and their ratio, and what reading
//! every person (what each page did before) costs on its own.
//!
//!   .ci/bench-pages          # or: cargo run -p portcullis --example bench_pages
//!   BENCH_PEOPLE=10000 BENCH_REQUESTS=100000 BENCH_ROUNDS=300 .ci/bench-pages

mod support;

use anyhow::Result;
use app::ssr::Portal as _;
use portcullis::store;
use rand::{Rng, SeedableRng};
use std::time::Instant;
use support::*;

#[tokio::main]
async fn main() -> Result<()> {
    let people = env_or("BENCH_PEOPLE", 10_000) as usize;
    let requests = env_or("BENCH_REQUESTS", 100_000) as usize;
    let rounds = env_or("BENCH_ROUNDS", 300) as usize;
    let dir = tempfile::TempDir::new()?;
    let (store, now) = demo_store(dir.path(), "pages").await?;

    let loaded = Instant::now();
    let mut rng = rand::rngs::StdRng::seed_from_u64(42);
    let ids = seed_company(&store, people, requests, now, &mut rng).await?;
    println!(
        "bench-pages: {people} people, {requests} requests (each decided, each with a grant), \
         loaded in {:.1} s",
        loaded.elapsed().as_secs_f64()
    );

    let portal = simulated_portal(&store);
    let mut page = Vec::with_capacity(rounds);
    let mut bare = Vec::with_capacity(rounds);
    let mut rows = 0usize;
    for _ in 0..rounds {
        let i = rng.gen_range(0..people);
        let who = store::get_user(&mut *store.conn().await?, &ids[i])
            .await?
            .expect("a person");
        // Alternating, so the machine's noise falls on both alike.
        let t = Instant::now();
        let mine = portal
            .my_access(&who)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        page.push(t.elapsed().as_secs_f64() * 1000.0);
        rows += mine.requests.len() + mine.grants.len();
        let t = Instant::now();
        {
            let mut conn = store.conn().await?;
            let r = store::requests_by_requester(&mut conn, &who.user_id).await?;
            let g = store::grants_for_principal(&mut conn, &who.user_id).await?;
            std::hint::black_box((r, g));
        }
        bare.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    page.sort_by(f64::total_cmp);
    bare.sort_by(f64::total_cmp);
    let everyone = {
        let t = Instant::now();
        let n = store::all_users(&mut *store.conn().await?).await?.len();
        (n, t.elapsed().as_secs_f64() * 1000.0)
    };
    println!(
        "  My access    p50 {:.2} ms, p99 {:.2} ms ({:.0} rows a page on average)",
        pct(&page, 0.5),
        pct(&page, 0.99),
        rows as f64 / rounds as f64
    );
    println!(
        "  bare queries p50 {:.2} ms, p99 {:.2} ms",
        pct(&bare, 0.5),
        pct(&bare, 0.99)
    );
    println!(
        "  ratio        {:.2}x at p50 (the page's assembly and its batched lookups over the \
         bare reads), {} rounds alternating",
        pct(&page, 0.5) / pct(&bare, 0.5),
        rounds
    );
    println!(
        "  for scale    reading every person once ({} people): {:.1} ms",
        everyone.0, everyone.1
    );
    Ok(())
}
