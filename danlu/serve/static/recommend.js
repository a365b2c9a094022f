"use strict";
// The input for recommendation runs: search the catalogue (GET /v1/items, one bounded page at a time), pick a
// few items, and "Recommend" asks POST /v1/recommend {"items": picked, "k": 10}: the top-k as a new user who
// liked those items, with scores and "because you rated X" where the model gives it. Everything the server
// sent is shown with textContent. Uses api, fail, $ and the result helpers of app.js.

const RECOMMEND_K = 10;
const SEARCH_LIMIT = 20;

function setUpRecommend(card) {
  $("recommend-input").hidden = false;
  $("top-k-label").hidden = true;
  $("backend").hidden = true;  // numpy or PyTorch by model; the card says which model
  $("explain-toggle").closest("label").hidden = true;  // no /v1/explain for recommendations
  $("result-heading").textContent = "Recommendations";
  $("status").textContent = "Pick a few items and press Recommend.";
  $("classes-heading").closest("div").hidden = true;
  const picked = new Map();  // item id -> title, in the order picked
  let latestSearch = 0;
  let timer = null;

  const showPicked = () => {
    const list = $("picked");
    list.replaceChildren();
    for (const [item, title] of picked) {
      const li = document.createElement("li");
      li.dataset.item = item;
      li.textContent = title;
      const drop = document.createElement("button");
      drop.type = "button";
      drop.className = "unpick";
      drop.textContent = "×";
      drop.title = `Remove ${title}`;
      drop.addEventListener("click", () => { picked.delete(item); showPicked(); });
      li.append(drop);
      list.append(li);
    }
    $("picked-empty").hidden = picked.size > 0;
    $("recommend").disabled = picked.size === 0;
  };

  const search = async () => {
    const mine = ++latestSearch;
    const q = $("item-search").value;
    try {
      const page = await api(`v1/items?q=${encodeURIComponent(q)}&limit=${SEARCH_LIMIT}`);
      if (mine !== latestSearch) return;
      const hits = $("item-hits");
      hits.replaceChildren();
      for (const { item, title } of page.items) {
        const li = document.createElement("li");
        const pick = document.createElement("button");
        pick.type = "button";
        pick.className = "hit";
        pick.dataset.item = item;
        pick.textContent = title;
        pick.addEventListener("click", () => { picked.set(item, title); showPicked(); });
        li.append(pick);
        hits.append(li);
      }
      $("item-more").textContent = page.total === 0 ? "No item matches." :
        page.total > page.items.length ? `${page.items.length} of ${page.total} matches; type more to narrow.` : "";
    } catch (error) {
      if (mine === latestSearch) fail(error.message, error.detail);
    }
  };

  const showRecommendations = (result) => {
    const list = document.createElement("ol");
    list.className = "recs";
    for (const row of result.recommendations) {
      const li = document.createElement("li");
      li.className = "rec";
      li.dataset.item = row.item;
      const title = document.createElement("span");
      title.className = "label";
      title.textContent = row.title;
      const score = document.createElement("span");
      score.className = "score";
      score.textContent = Number(row.score).toFixed(4);
      li.append(title, score);
      if (row.because) {
        const why = document.createElement("small");
        why.className = "because muted";
        why.textContent = `because you rated ${row.because.title}`;
        li.append(why);
      }
      list.append(li);
    }
    const notes = (result.notes || []).map((note) => {
      const p = document.createElement("p");
      p.className = "muted small";
      p.textContent = note;
      return p;
    });
    $("results").replaceChildren(list, ...notes);
  };

  const recommend = async () => {
    const mine = ++latestRequest;
    $("error").hidden = true;
    $("status").hidden = false;
    $("status").textContent = "Recommending…";
    $("recommend").disabled = true;
    const t0 = performance.now();
    try {
      const result = await api("v1/recommend", { method: "POST", headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ items: [...picked.keys()], k: RECOMMEND_K }) });
      if (mine !== latestRequest) return;
      $("status").hidden = true;
      $("timing").textContent = `${Math.round(performance.now() - t0)} ms`;
      showRecommendations(result);
    } catch (error) {
      if (mine === latestRequest) fail(error.message, error.detail);
    } finally {
      if (mine === latestRequest) $("recommend").disabled = picked.size === 0;
    }
  };

  $("item-search").addEventListener("input", () => { clearTimeout(timer); timer = setTimeout(search, 150); });
  $("recommend").addEventListener("click", recommend);
  $("clear-picked").addEventListener("click", () => { picked.clear(); showPicked(); clearResults(); });
  showPicked();
  search();
}
