//! A synthetic social graph, written in bulk with COPY: every user follows
//! the same number of others, chosen by a power law (Zipf), so a few users
//! have thousands of followers and most have a handful.

use anyhow::Context as _;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sqlx::PgPool;
use uuid::Uuid;

/// The shape of the graph.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct GraphParams {
    pub users: usize,
    /// Users each user follows; also the average follower count.
    pub follows_per_user: usize,
    /// Zipf exponent of popularity: 0 is uniform, 1 is steep.
    pub zipf_exponent: f64,
    pub seed: u64,
}

/// The graph, by index into `users`.
pub struct Graph {
    pub users: Vec<Uuid>,
    /// Followers of each user.
    pub followers: Vec<u32>,
    /// (follower, followee).
    pub follows: Vec<(u32, u32)>,
}

impl Graph {
    pub fn generate(params: GraphParams) -> Graph {
        let n = params.users;
        let mut rng = StdRng::seed_from_u64(params.seed);
        let users: Vec<Uuid> = (0..n).map(|_| Uuid::now_v7()).collect();
        // Cumulative Zipf weights over popularity ranks; rank r is user r.
        let mut cumulative = Vec::with_capacity(n);
        let mut total = 0.0;
        for rank in 0..n {
            total += 1.0 / ((rank + 1) as f64).powf(params.zipf_exponent);
            cumulative.push(total);
        }
        let k = params.follows_per_user.min(n.saturating_sub(1));
        let mut followers = vec![0u32; n];
        let mut follows = Vec::with_capacity(n * k);
        let mut chosen = Vec::with_capacity(k);
        for follower in 0..n {
            chosen.clear();
            while chosen.len() < k {
                let x = rng.random::<f64>() * total;
                let followee = cumulative.partition_point(|c| *c < x).min(n - 1);
                if followee != follower && !chosen.contains(&followee) {
                    chosen.push(followee);
                }
            }
            for &followee in &chosen {
                followers[followee] += 1;
                follows.push((follower as u32, followee as u32));
            }
        }
        Graph {
            users,
            followers,
            follows,
        }
    }

    /// The handle of user `i` (they all share the bench's password).
    pub fn handle(i: usize) -> String {
        format!("u{i}")
    }

    pub fn max_followers(&self) -> u32 {
        self.followers.iter().copied().max().unwrap_or(0)
    }
}

/// Replaces whatever the database holds with `graph`, in bulk.
pub async fn write(db: &PgPool, graph: &Graph, password_hash: &str) -> anyhow::Result<()> {
    let mut conn = db.acquire().await?;
    sqlx::query(
        "TRUNCATE users, follows, posts, likes, refresh_tokens, outbox, dead_letters, audit_log",
    )
    .execute(&mut *conn)
    .await
    .context("emptying the bench database")?;

    let mut csv = String::with_capacity(graph.users.len() * 160);
    for (i, id) in graph.users.iter().enumerate() {
        let handle = Graph::handle(i);
        csv.push_str(&format!(
            // Quoted: a PHC hash has commas in it.
            "{id},{handle},{handle},\"{password_hash}\",{}\n",
            graph.followers[i]
        ));
    }
    let mut copy = conn
        .copy_in_raw(
            "COPY users (id, handle, display_name, password_hash, follower_count) FROM STDIN (FORMAT csv)",
        )
        .await?;
    copy.send(csv.as_bytes()).await?;
    copy.finish().await.context("copying users")?;

    let mut copy = conn
        .copy_in_raw("COPY follows (follower_id, followee_id) FROM STDIN (FORMAT csv)")
        .await?;
    // In chunks, so the whole edge list never sits in one string.
    for chunk in graph.follows.chunks(100_000) {
        let mut csv = String::with_capacity(chunk.len() * 74);
        for &(follower, followee) in chunk {
            csv.push_str(&format!(
                "{},{}\n",
                graph.users[follower as usize], graph.users[followee as usize]
            ));
        }
        copy.send(csv.as_bytes()).await?;
    }
    copy.finish().await.context("copying follows")?;
    sqlx::query("ANALYZE users, follows")
        .execute(&mut *conn)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_graph_has_the_asked_shape_and_a_heavy_head() {
        let g = Graph::generate(GraphParams {
            users: 2_000,
            follows_per_user: 20,
            zipf_exponent: 0.8,
            seed: 1,
        });
        assert_eq!(g.follows.len(), 2_000 * 20);
        assert_eq!(
            g.followers.iter().map(|f| *f as usize).sum::<usize>(),
            40_000
        );
        // Nobody follows themselves or anyone twice.
        let mut edges = g.follows.clone();
        edges.sort_unstable();
        edges.dedup();
        assert_eq!(edges.len(), g.follows.len());
        assert!(g.follows.iter().all(|(a, b)| a != b));
        // A power law: the most followed has far more than the average.
        assert!(g.max_followers() > 20 * 10, "{}", g.max_followers());
        let median = {
            let mut f = g.followers.clone();
            f.sort_unstable();
            f[f.len() / 2]
        };
        assert!(median < 20, "{median}");
    }
}
