// Fanout's web client: plain JavaScript, no build step. Talks to the same
// API as every other client; the live feed is GET /feed/stream, opened with
// a single-use ticket because EventSource cannot send an Authorization
// header.
'use strict';

// How often the freshness indicator asks GET /feed how far fan-out is.
const FRESHNESS_EVERY_MS = 3000;
// Reconnect delays after a stream ends: doubled up to the last.
const RECONNECT_MS = [250, 1000, 2000, 5000];

const $ = (id) => document.getElementById(id);
const session = {
  get: (k) => sessionStorage.getItem('fanout.' + k),
  set: (k, v) => (v == null ? sessionStorage.removeItem('fanout.' + k) : sessionStorage.setItem('fanout.' + k, v)),
};

let stream = null;
let reconnects = 0;
let freshnessTimer = null;

function say(text) {
  $('message').textContent = text || '';
}

// A request to the API; an expired access token is refreshed once.
async function api(method, path, body, retried) {
  const headers = {};
  const token = session.get('access');
  if (token) headers.Authorization = 'Bearer ' + token;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const response = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (response.status === 401 && token && !retried && (await refresh())) {
    return api(method, path, body, true);
  }
  const text = await response.text();
  const data = text ? JSON.parse(text) : null;
  if (!response.ok) {
    const error = new Error((data && data.detail) || response.statusText);
    error.status = response.status;
    throw error;
  }
  return data;
}

async function refresh() {
  const refreshToken = session.get('refresh');
  if (!refreshToken) return false;
  const response = await fetch('/auth/refresh', {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ refresh_token: refreshToken }),
  });
  if (!response.ok) return false;
  const tokens = await response.json();
  session.set('access', tokens.access_token);
  session.set('refresh', tokens.refresh_token);
  return true;
}

// Posts are kept newest first, as GET /feed orders them.
function newer(a, b) {
  return a.created_at === b.created_at ? a.id > b.id : a.created_at > b.created_at;
}

function render(post, isNew) {
  if (document.getElementById('post-' + post.id)) return;
  const item = document.createElement('li');
  item.id = 'post-' + post.id;
  item.dataset.createdAt = post.created_at;
  item.dataset.author = post.author_id;
  if (isNew) item.classList.add('new');
  const meta = document.createElement('p');
  meta.className = 'meta';
  const when = new Date(post.created_at);
  meta.textContent = '@' + post.author_handle + ' · ' + when.toLocaleString();
  const content = document.createElement('p');
  content.className = 'content';
  content.textContent = post.content;
  const like = document.createElement('button');
  like.type = 'button';
  like.className = 'like';
  like.setAttribute('aria-pressed', 'false');
  like.dataset.post = post.id;
  showLikes(like, post.like_count);
  like.addEventListener('click', () => toggleLike(like));
  item.append(meta, content, like);
  const feed = $('feed');
  let before = null;
  for (const other of feed.children) {
    const o = { id: other.id.slice(5), created_at: other.dataset.createdAt };
    if (newer(post, o)) {
      before = other;
      break;
    }
  }
  feed.insertBefore(item, before);
  $('feed-empty').hidden = true;
}

function showLikes(button, count) {
  button.textContent = 'Like (' + count + ')';
  button.setAttribute('aria-label', 'Like, ' + count + (count === 1 ? ' like' : ' likes'));
}

async function toggleLike(button) {
  const liked = button.getAttribute('aria-pressed') === 'true';
  try {
    const state = await api(liked ? 'DELETE' : 'POST', '/posts/' + button.dataset.post + '/like');
    button.setAttribute('aria-pressed', String(state.liked));
    showLikes(button, state.like_count);
  } catch (e) {
    say('Could not like: ' + e.message);
  }
}

function remove(removal) {
  if (removal.post_id) {
    const item = document.getElementById('post-' + removal.post_id);
    if (item) item.remove();
  }
  if (removal.author_id) {
    for (const item of [...$('feed').children]) {
      if (item.dataset.author === removal.author_id) item.remove();
    }
  }
  $('feed-empty').hidden = $('feed').children.length > 0;
}

function showFreshness(freshness) {
  if (!freshness || freshness.lag_ms == null) {
    $('freshness').textContent = 'Fan-out progress unknown';
    return;
  }
  const pending = freshness.pending_events || 0;
  $('freshness').textContent = pending === 0 && freshness.lag_ms < 1000
    ? 'Fan-out caught up'
    : 'Fan-out ' + (freshness.lag_ms / 1000).toFixed(1) + ' s behind, ' + pending + ' events pending';
  $('freshness').dataset.lagMs = String(freshness.lag_ms);
}

async function loadPage() {
  const page = await api('GET', '/feed?limit=50');
  for (const post of page.items) render(post, false);
  showFreshness(page.freshness);
}

async function pollFreshness() {
  try {
    const page = await api('GET', '/feed?limit=1');
    showFreshness(page.freshness);
  } catch (e) {
    $('freshness').textContent = 'Fan-out progress unknown';
  }
}

// Opens the live stream: after its cursor when the page saw one, otherwise
// live from now, and the first page is read once the stream is listening,
// so nothing falls between the two.
async function openStream() {
  let ticket;
  try {
    ticket = await api('POST', '/feed/stream/tickets');
  } catch (e) {
    if (e.status === 401) return signOut();
    return scheduleReconnect();
  }
  let url = '/feed/stream?ticket=' + encodeURIComponent(ticket.ticket);
  const cursor = session.get('cursor');
  if (cursor) url += '&cursor=' + encodeURIComponent(cursor);
  const source = new EventSource(url);
  stream = source;
  let pageRead = false;
  source.addEventListener('post', (event) => {
    if (event.lastEventId) session.set('cursor', event.lastEventId);
    render(JSON.parse(event.data), true);
  });
  source.addEventListener('removed', (event) => remove(JSON.parse(event.data)));
  source.addEventListener('ready', async () => {
    reconnects = 0;
    $('live-status').textContent = 'Live';
    if (!pageRead) {
      pageRead = true;
      try {
        await loadPage();
      } catch (e) {
        say('Could not read the feed: ' + e.message);
      }
    }
  });
  source.addEventListener('reset', () => {
    session.set('cursor', null);
    $('feed').replaceChildren();
  });
  // `bye` and any network failure: the ticket is spent, so a new stream
  // is opened with a new one, resuming from the cursor.
  source.onerror = () => {
    source.close();
    if (stream === source) scheduleReconnect();
  };
}

function scheduleReconnect() {
  $('live-status').textContent = 'Reconnecting…';
  const delay = RECONNECT_MS[Math.min(reconnects, RECONNECT_MS.length - 1)];
  reconnects += 1;
  setTimeout(() => {
    if (session.get('access')) openStream();
  }, delay);
}

function showSignedIn() {
  $('signed-out').hidden = true;
  $('signed-in').hidden = false;
  $('whoami').hidden = false;
  $('handle-shown').textContent = '@' + session.get('handle');
  openStream();
  freshnessTimer = setInterval(pollFreshness, FRESHNESS_EVERY_MS);
}

function signOut() {
  const refreshToken = session.get('refresh');
  if (refreshToken) {
    fetch('/auth/logout', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ refresh_token: refreshToken }),
    }).catch(() => {});
  }
  sessionStorage.clear();
  if (stream) stream.close();
  stream = null;
  clearInterval(freshnessTimer);
  $('feed').replaceChildren();
  $('signed-in').hidden = true;
  $('whoami').hidden = true;
  $('signed-out').hidden = false;
}

$('auth-form').addEventListener('submit', async (event) => {
  event.preventDefault();
  const handle = $('auth-handle').value.trim();
  const password = $('auth-password').value;
  say('');
  try {
    if (event.submitter && event.submitter.value === 'signup') {
      await api('POST', '/users', { handle, password });
    }
    const tokens = await api('POST', '/auth/login', { handle, password });
    session.set('access', tokens.access_token);
    session.set('refresh', tokens.refresh_token);
    session.set('handle', handle.toLowerCase());
    $('auth-password').value = '';
    showSignedIn();
  } catch (e) {
    say(e.message);
  }
});

$('compose').addEventListener('submit', async (event) => {
  event.preventDefault();
  const text = $('compose-text');
  try {
    await api('POST', '/posts', { content: text.value });
    text.value = '';
    say('');
  } catch (e) {
    say('Could not post: ' + e.message);
  }
});

$('follow-form').addEventListener('submit', async (event) => {
  event.preventDefault();
  const action = event.submitter && event.submitter.value === 'unfollow' ? 'unfollow' : 'follow';
  const handle = $('follow-handle').value.trim();
  try {
    const user = await api('GET', '/users/by-handle/' + encodeURIComponent(handle));
    await api('POST', '/users/' + user.id + '/' + action);
    say('');
    $('follow-handle').value = '';
    $('live-status').textContent = 'Live (' + (action === 'follow' ? 'following' : 'unfollowed') + ' @' + user.handle + ')';
  } catch (e) {
    say('Could not ' + action + ': ' + e.message);
  }
});

$('logout').addEventListener('click', signOut);

if (session.get('access')) showSignedIn();
