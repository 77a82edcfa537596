//! What users do during a drill, over the REST API: authors post (each
//! post that answered 201 is *acknowledged*), followers read, and the
//! check that every acknowledged post is in every follower's home feed,
//! once.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use serde_json::{Value, json};
use tokio::sync::Mutex;
use uuid::Uuid;

/// A signed-in user.
#[derive(Debug, Clone)]
pub struct User {
    pub id: Uuid,
    pub token: String,
}

/// Authors who post and followers who follow every author and read.
pub struct People {
    pub authors: Vec<User>,
    pub followers: Vec<User>,
}

/// Pause between two posts of the writer: about 12 posts a second, so a
/// drill's posts (at most about 7 s of writing) fit one feed page (100).
const WRITE_EVERY: Duration = Duration::from_millis(80);
/// Pause between two reads of the readers.
const READ_EVERY: Duration = Duration::from_millis(100);
/// Longest wait of one request; a fault may hold it up.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(REQUEST_TIMEOUT)
        .build()
        .expect("an HTTP client")
}

async fn call(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: String,
    token: Option<&str>,
    body: Option<Value>,
) -> anyhow::Result<Value> {
    let mut request = http.request(method, &url);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await?;
    let status = response.status();
    let text = response.text().await?;
    if !status.is_success() {
        bail!("{url}: {status} {text}");
    }
    Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
}

async fn sign_up(http: &reqwest::Client, api: &str, handle: &str) -> anyhow::Result<User> {
    let credentials = json!({"handle": handle, "password": "correct horse battery"});
    let user = call(
        http,
        reqwest::Method::POST,
        format!("{api}/users"),
        None,
        Some(credentials.clone()),
    )
    .await?;
    let tokens = call(
        http,
        reqwest::Method::POST,
        format!("{api}/auth/login"),
        None,
        Some(credentials),
    )
    .await?;
    Ok(User {
        id: user["id"].as_str().context("an id")?.parse()?,
        token: tokens["access_token"]
            .as_str()
            .context("a token")?
            .to_owned(),
    })
}

impl People {
    /// `authors` authors, `followers` followers following each of them and
    /// reading once, so the feeds' Redis keeps their feeds.
    pub async fn sign_up(api: &str, authors: usize, followers: usize) -> anyhow::Result<People> {
        let http = http();
        let run = &Uuid::now_v7().simple().to_string()[20..];
        let mut people = People {
            authors: Vec::new(),
            followers: Vec::new(),
        };
        for n in 0..authors {
            people
                .authors
                .push(sign_up(&http, api, &format!("a{n}_{run}")).await?);
        }
        for n in 0..followers {
            let follower = sign_up(&http, api, &format!("f{n}_{run}")).await?;
            for author in &people.authors {
                let url = format!("{api}/users/{}/follow", author.id);
                call(
                    &http,
                    reqwest::Method::POST,
                    url,
                    Some(&follower.token),
                    None,
                )
                .await?;
            }
            feed_page(&http, api, &follower).await?;
            people.followers.push(follower);
        }
        Ok(people)
    }
}

/// The post ids on the first page (100) of a user's home feed, newest first.
async fn feed_page(http: &reqwest::Client, api: &str, user: &User) -> anyhow::Result<Vec<Uuid>> {
    let page = call(
        http,
        reqwest::Method::GET,
        format!("{api}/feed?limit=100"),
        Some(&user.token),
        None,
    )
    .await?;
    page["items"]
        .as_array()
        .context("items")?
        .iter()
        .map(|p| Ok(p["id"].as_str().context("an id")?.parse()?))
        .collect()
}

/// Load running until stopped: one writer, one reader.
pub struct Load {
    stop: Arc<AtomicBool>,
    acknowledged: Arc<Mutex<Vec<Uuid>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    pub fn start(api: &str, people: &People) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let acknowledged = Arc::new(Mutex::new(Vec::new()));
        let writer = {
            let (stop, acknowledged) = (stop.clone(), acknowledged.clone());
            let (api, authors) = (api.to_owned(), people.authors.clone());
            tokio::spawn(async move {
                let http = http();
                let mut n = 0usize;
                while !stop.load(Ordering::Relaxed) {
                    let author = &authors[n % authors.len()];
                    n += 1;
                    let body = json!({"content": format!("drill post {n}")});
                    let posted = call(
                        &http,
                        reqwest::Method::POST,
                        format!("{api}/posts"),
                        Some(&author.token),
                        Some(body),
                    )
                    .await;
                    // Only a 201 is an acknowledgement; errors are the fault's.
                    if let Some(id) = posted.ok().and_then(|p| p["id"].as_str()?.parse().ok()) {
                        acknowledged.lock().await.push(id);
                    }
                    tokio::time::sleep(WRITE_EVERY).await;
                }
            })
        };
        let reader = {
            let stop = stop.clone();
            let (api, followers) = (api.to_owned(), people.followers.clone());
            tokio::spawn(async move {
                let http = http();
                let mut n = 0usize;
                while !stop.load(Ordering::Relaxed) {
                    let _ = feed_page(&http, &api, &followers[n % followers.len()]).await;
                    n += 1;
                    tokio::time::sleep(READ_EVERY).await;
                }
            })
        };
        Load {
            stop,
            acknowledged,
            tasks: vec![writer, reader],
        }
    }

    /// Stops the load; the posts acknowledged meanwhile.
    pub async fn stop(self) -> Vec<Uuid> {
        self.stop.store(true, Ordering::Relaxed);
        for task in self.tasks {
            let _ = task.await;
        }
        let acknowledged = self.acknowledged.lock().await;
        acknowledged.clone()
    }
}

/// What the check found.
#[derive(Debug, Clone, Copy, Default)]
pub struct Outcome {
    /// (follower, post) pairs missing when the check gave up (0 when it
    /// converged).
    pub lost: usize,
    /// (follower, post) pairs shown more than once.
    pub duplicated: usize,
    /// How long after `since` every follower's feed held every post; `None`
    /// if they never did within the deadline.
    pub converged_after: Option<Duration>,
}

/// Reads every follower's feed until each holds every post in `posts`
/// (once), or `deadline` passes.
pub async fn check(
    api: &str,
    people: &People,
    posts: &[Uuid],
    since: Instant,
    deadline: Duration,
) -> Outcome {
    let http = http();
    let wanted: HashSet<Uuid> = posts.iter().copied().collect();
    let mut outcome = Outcome::default();
    loop {
        let mut missing = 0;
        let mut duplicated = 0;
        for follower in &people.followers {
            let Ok(page) = feed_page(&http, api, follower).await else {
                missing += wanted.len();
                continue;
            };
            let mut seen: HashMap<Uuid, usize> = HashMap::new();
            for id in page {
                *seen.entry(id).or_default() += 1;
            }
            missing += wanted.iter().filter(|id| !seen.contains_key(id)).count();
            duplicated += seen.values().filter(|n| **n > 1).count();
        }
        outcome.lost = missing;
        outcome.duplicated = outcome.duplicated.max(duplicated);
        if missing == 0 {
            outcome.converged_after = Some(since.elapsed());
            return outcome;
        }
        if since.elapsed() > deadline {
            return outcome;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
