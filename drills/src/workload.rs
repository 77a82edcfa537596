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

/// Authors who post, followers who follow every author and read, and late
/// followers who read and follow the first author during one drill each.
pub struct People {
    pub authors: Vec<User>,
    pub followers: Vec<User>,
    pub late: Vec<User>,
}

/// Pause between two posts of the writer: about 12 posts a second, so a
/// drill's posts (at most about 7 s of writing) fit one feed page (100).
const WRITE_EVERY: Duration = Duration::from_millis(80);
/// Every this many posts, the writer deletes the post it just wrote.
const DELETE_EVERY: usize = 7;
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
    pub async fn sign_up(
        api: &str,
        authors: usize,
        followers: usize,
        late: usize,
    ) -> anyhow::Result<People> {
        let http = http();
        let run = &Uuid::now_v7().simple().to_string()[20..];
        let mut people = People {
            authors: Vec::new(),
            followers: Vec::new(),
            late: Vec::new(),
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
        for n in 0..late {
            let user = sign_up(&http, api, &format!("l{n}_{run}")).await?;
            feed_page(&http, api, &user).await?;
            people.late.push(user);
        }
        Ok(people)
    }
}

/// `follower` follows (or, with `follow` false, unfollows) `author`;
/// whether that was acknowledged.
pub async fn follow(api: &str, follower: &User, author: &User, follow: bool) -> bool {
    let verb = if follow { "follow" } else { "unfollow" };
    let url = format!("{api}/users/{}/{verb}", author.id);
    call(
        &http(),
        reqwest::Method::POST,
        url,
        Some(&follower.token),
        None,
    )
    .await
    .is_ok()
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

/// What the writer had acknowledged: posts (with their author's index)
/// and deletions.
#[derive(Debug, Clone, Default)]
pub struct Written {
    pub posts: Vec<(Uuid, usize)>,
    pub deleted: Vec<Uuid>,
}

impl Written {
    /// Acknowledged posts not deleted since.
    pub fn standing(&self) -> Vec<Uuid> {
        self.standing_by(None)
    }

    /// Acknowledged posts by the author of index `author`, deleted or not.
    pub fn by(&self, author: usize) -> Vec<Uuid> {
        self.posts
            .iter()
            .filter(|(_, by)| *by == author)
            .map(|(id, _)| *id)
            .collect()
    }

    /// The same, by the author of index `author` only.
    pub fn standing_by(&self, author: Option<usize>) -> Vec<Uuid> {
        self.posts
            .iter()
            .filter(|(id, by)| !self.deleted.contains(id) && author.is_none_or(|a| a == *by))
            .map(|(id, _)| *id)
            .collect()
    }
}

/// Load running until stopped: one writer (posting, and deleting some of
/// its posts), one reader.
pub struct Load {
    stop: Arc<AtomicBool>,
    written: Arc<Mutex<Written>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    pub fn start(api: &str, people: &People) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let written = Arc::new(Mutex::new(Written::default()));
        let writer = {
            let (stop, written) = (stop.clone(), written.clone());
            let (api, authors) = (api.to_owned(), people.authors.clone());
            tokio::spawn(async move {
                let http = http();
                let mut n = 0usize;
                while !stop.load(Ordering::Relaxed) {
                    let by = n % authors.len();
                    let author = &authors[by];
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
                    let posted: Option<Uuid> =
                        posted.ok().and_then(|p| p["id"].as_str()?.parse().ok());
                    if let Some(id) = posted {
                        written.lock().await.posts.push((id, by));
                        if n.is_multiple_of(DELETE_EVERY) {
                            let url = format!("{api}/posts/{id}");
                            let deleted = call(
                                &http,
                                reqwest::Method::DELETE,
                                url,
                                Some(&author.token),
                                None,
                            )
                            .await;
                            if deleted.is_ok() {
                                written.lock().await.deleted.push(id);
                            }
                        }
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
            written,
            tasks: vec![writer, reader],
        }
    }

    /// Stops the load; what was acknowledged meanwhile.
    pub async fn stop(self) -> Written {
        self.stop.store(true, Ordering::Relaxed);
        for task in self.tasks {
            let _ = task.await;
        }
        let written = self.written.lock().await;
        written.clone()
    }
}

/// What the check found.
#[derive(Debug, Clone, Copy, Default)]
pub struct Outcome {
    /// (reader, post) pairs missing from readers' feeds when the check gave
    /// up (0 when it converged).
    pub lost: usize,
    /// (reader, post) pairs shown more than once.
    pub duplicated: usize,
    /// (reader, post) pairs that should have left the feed kept in Redis
    /// (the post deleted, or its author unfollowed) and were still there
    /// when the check gave up (0 when it converged).
    pub undeleted: usize,
    /// How long after `since` every feed was as it should be (every post
    /// present once, every removal gone from Redis); `None` if not within
    /// the deadline.
    pub converged_after: Option<Duration>,
}

/// Posts a reader must find in their home feed (`present`), and posts the
/// feed the feeds' Redis keeps for them must no longer hold (`absent`).
pub struct Expectation {
    pub reader: User,
    pub present: Vec<Uuid>,
    pub absent: Vec<Uuid>,
}

/// Reads each reader's feed (`GET /feed`, as they see it) and the feed the
/// feeds' Redis keeps for them until the first holds their present posts,
/// once each, and the second none of their absent ones (or until
/// `deadline`).
pub async fn check(
    api: &str,
    feed_redis_url: &str,
    expectations: &[Expectation],
    since: Instant,
    deadline: Duration,
) -> Outcome {
    let http = http();
    let mut outcome = Outcome::default();
    loop {
        let (mut missing, mut duplicated, mut undeleted) = (0, 0, 0);
        for expected in expectations {
            let Ok(page) = feed_page(&http, api, &expected.reader).await else {
                missing += expected.present.len();
                continue;
            };
            let mut seen: HashMap<Uuid, usize> = HashMap::new();
            for id in page {
                *seen.entry(id).or_default() += 1;
            }
            missing += expected
                .present
                .iter()
                .filter(|id| !seen.contains_key(id))
                .count();
            duplicated += seen.values().filter(|n| **n > 1).count();
            let kept: HashSet<Uuid> = kept_feed(feed_redis_url, &expected.reader)
                .await
                .into_iter()
                .collect();
            undeleted += expected
                .absent
                .iter()
                .filter(|id| kept.contains(id))
                .count();
        }
        outcome.lost = missing;
        outcome.undeleted = undeleted;
        outcome.duplicated = outcome.duplicated.max(duplicated);
        if missing == 0 && undeleted == 0 {
            outcome.converged_after = Some(since.elapsed());
            return outcome;
        }
        if since.elapsed() > deadline {
            return outcome;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The posts in a reader's feed as the feeds' Redis keeps it (none when it
/// keeps none, or cannot be reached).
async fn kept_feed(feed_redis_url: &str, reader: &User) -> Vec<Uuid> {
    let Ok(client) = redis::Client::open(feed_redis_url) else {
        return Vec::new();
    };
    let Ok(mut conn) = client.get_multiplexed_async_connection().await else {
        return Vec::new();
    };
    feed_core::feed_store::members(&mut conn, reader.id)
        .await
        .unwrap_or_default()
}
