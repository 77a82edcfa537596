#!/usr/bin/env python3
"""The chart's Grafana dashboards without Grafana, for scripts/dashboard-preview.sh.

  dashboard-preview.py load API_URL SECONDS
      signs up users who follow each other, then posts, likes, reads feeds
      and sends a few bad requests, for SECONDS.
  dashboard-preview.py plot PROMETHEUS_URL DASHBOARD.json OUT.png MINUTES FEEDCLUSTER
      runs every panel's queries over the last MINUTES on that Prometheus
      (query_range, $feedcluster set to FEEDCLUSTER, rate windows of 5m
      shortened to 30s for a run of minutes) and draws the panels in the
      dashboard's own grid; a panel with no data says so.
"""
import json
import random
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

# Users in the load: enough for fan-out to write several feeds per post.
USERS = 30
# Each user follows this many others.
FOLLOWS = 8
# Concurrent clients.
CLIENTS = 6


def call(api, method, path, body=None, token=None):
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(api + path, data=data, method=method)
    request.add_header("content-type", "application/json")
    if token:
        request.add_header("authorization", "Bearer " + token)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            text = response.read()
            return response.status, json.loads(text) if text else None
    except urllib.error.HTTPError as e:
        return e.code, None


def load(api, seconds):
    run = str(int(time.time()))
    users = []
    for i in range(USERS):
        handle = f"p{run}u{i}"
        status, user = call(api, "POST", "/users", {"handle": handle, "password": "correct horse"})
        assert status == 201, (status, user)
        _, login = call(api, "POST", "/auth/login", {"handle": handle, "password": "correct horse"})
        users.append((user["id"], login["access_token"]))
    for i, (_, token) in enumerate(users):
        for other in random.Random(i).sample(range(USERS), FOLLOWS + 1):
            if other != i:
                call(api, "POST", f"/users/{users[other][0]}/follow", token=token)
    posts = []
    deadline = time.time() + seconds

    def client(seed):
        rng = random.Random(seed)
        while time.time() < deadline:
            user_id, token = rng.choice(users)
            roll = rng.random()
            if roll < 0.25:
                status, post = call(api, "POST", "/posts", {"content": "preview"}, token)
                if status == 201:
                    posts.append(post["id"])
            elif roll < 0.35 and posts:
                call(api, "POST", f"/posts/{rng.choice(posts)}/like", token=token)
            elif roll < 0.37:
                call(api, "GET", "/posts/not-a-post", token=token)
            elif roll < 0.38:
                call(api, "POST", "/posts", {"content": 42}, token)
            else:
                call(api, "GET", "/feed", token=token)
            time.sleep(rng.uniform(0.005, 0.03))

    threads = [threading.Thread(target=client, args=(n,)) for n in range(CLIENTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print(f"load: {USERS} users, {len(posts)} posts in {seconds} s")


def query_range(prometheus, expr, start, end, step):
    params = urllib.parse.urlencode({"query": expr, "start": start, "end": end, "step": step})
    with urllib.request.urlopen(f"{prometheus}/api/v1/query_range?{params}", timeout=30) as r:
        reply = json.load(r)
    assert reply["status"] == "success", reply
    return reply["data"]["result"]


def legend(template, labels):
    text = template
    for key, value in labels.items():
        text = text.replace("{{" + key + "}}", value)
    return text


def plot(prometheus, dashboard_file, out, minutes, feedcluster):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with open(dashboard_file) as f:
        dashboard = json.load(f)
    panels = dashboard["panels"]
    rows = max(p["gridPos"]["y"] // 8 for p in panels) + 1
    fig, axes = plt.subplots(rows, 2, figsize=(14, 3.2 * rows), squeeze=False)
    end = time.time()
    start = end - minutes * 60
    for panel in panels:
        ax = axes[panel["gridPos"]["y"] // 8][panel["gridPos"]["x"] // 12]
        ax.set_title(panel["title"], fontsize=10)
        drawn = 0
        for target in panel["targets"]:
            expr = target["expr"].replace("$feedcluster", feedcluster).replace("[5m]", "[30s]")
            for series in query_range(prometheus, expr, start, end, 5):
                points = [(float(t) - start, float(v)) for t, v in series["values"] if v not in ("NaN", "+Inf", "-Inf")]
                if not points:
                    continue
                xs, ys = zip(*points)
                ax.plot(xs, ys, label=legend(target.get("legendFormat", ""), series["metric"]))
                drawn += 1
        unit = panel["fieldConfig"]["defaults"].get("unit", "")
        ax.set_xlabel("seconds", fontsize=8)
        ax.set_ylabel(unit, fontsize=8)
        ax.tick_params(labelsize=7)
        if drawn:
            ax.legend(fontsize=6, loc="upper left")
        else:
            ax.text(0.5, 0.5, "no data here (an operator metric:\nit needs the autoscaler on a cluster)"
                    if "fanout_autoscaler_" in json.dumps(panel["targets"]) else "no series: none happened",
                    ha="center", va="center", transform=ax.transAxes, fontsize=9, color="gray")
    for row in axes:
        for ax in row:
            if not ax.has_data() and not ax.texts and not ax.get_title():
                ax.axis("off")
    fig.suptitle(f"{dashboard['title']} (a local stack under load, queried from Prometheus)", fontsize=12)
    fig.tight_layout()
    fig.savefig(out, dpi=80)
    print(f"wrote {out}")


if __name__ == "__main__":
    command, *args = sys.argv[1:]
    if command == "load":
        load(args[0], int(args[1]))
    elif command == "plot":
        plot(args[0], args[1], args[2], float(args[3]), args[4])
    else:
        sys.exit(__doc__)
