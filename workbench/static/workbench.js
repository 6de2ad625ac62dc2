// The workbench's behaviour: save ratings, send feedback and run the search again, make up a new shopper.
// Plain JavaScript with fetch; the pages work as forms and links, this only adds what needs the JSON API.
"use strict";

function answerOf(element) {
  return element.closest("[data-rankings]");
}

async function post(url, body) {
  const response = await fetch(url, {method: "POST", headers: {"content-type": "application/json"},
                                     body: JSON.stringify(body)});
  let data = {};
  try {
    data = await response.json();
  } catch (error) {
    data = {error: `the workbench answered ${response.status} without a message`};
  }
  if (!response.ok) {
    throw new Error(data.error || `the workbench answered ${response.status}`);
  }
  return data;
}

async function rate(input) {
  const item = input.closest("[data-product]");
  const answer = answerOf(input);
  const status = item.querySelector(".saved");
  const productId = item.dataset.product;
  status.classList.remove("failed");
  status.textContent = "saving…";
  try {
    const data = await post("/api/judgments", {
      server: answer.dataset.server, shop: answer.dataset.shop, query: answer.dataset.query, product_id: productId,
      gain: Number(input.value), rankings: JSON.parse(answer.dataset.rankings)});
    // The same product on the other side of a comparison shows the same rating.
    answer.querySelectorAll(`[data-product="${CSS.escape(productId)}"] input[data-rate]`).forEach((other) => {
      other.checked = other.value === input.value;
    });
    answer.querySelectorAll(`[data-product="${CSS.escape(productId)}"] .saved`).forEach((other) => {
      other.classList.remove("failed");
      other.textContent = `saved ${data.gain}`;
    });
    for (const [side, quality] of Object.entries(data.quality)) {
      const shown = answer.querySelector(`[data-quality="${side}"]`);
      if (shown) {
        shown.textContent = quality.text;
      }
    }
  } catch (error) {
    status.classList.add("failed");
    status.textContent = `not saved: ${error.message}`;
  }
}

async function sendFeedback(button) {
  const item = button.closest("[data-product]");
  const answer = answerOf(button);
  const results = button.closest("[data-request]");
  const status = item.querySelector(".saved");
  const kind = button.dataset.feedback;
  button.disabled = true;
  try {
    await post("/api/feedback", {
      server: answer.dataset.server, user: answer.dataset.user, product_id: item.dataset.product, type: kind,
      request_id: results.dataset.request, position: Number(item.dataset.position), query: answer.dataset.query,
      title: item.dataset.title});
    // Run the search again, showing each product's move against the answer the feedback was sent from.
    const params = new URLSearchParams(window.location.search);
    params.set("since", JSON.parse(answer.dataset.rankings).main.join(","));
    params.set("sent", `${kind}:${item.dataset.product}`);
    window.location.assign(`${window.location.pathname}?${params.toString()}`);
  } catch (error) {
    button.disabled = false;
    status.classList.add("failed");
    status.textContent = `${kind} not sent: ${error.message}`;
  }
}

document.addEventListener("change", (event) => {
  if (event.target.matches("input[data-rate]")) {
    rate(event.target);
  }
});

document.addEventListener("click", (event) => {
  const feedback = event.target.closest("button[data-feedback]");
  if (feedback) {
    sendFeedback(feedback);
    return;
  }
  if (event.target.closest("button[data-new-shopper]")) {
    const user = document.getElementById("user");
    const random = new Uint8Array(4);
    crypto.getRandomValues(random);
    user.value = `shopper-${Array.from(random, (byte) => byte.toString(16).padStart(2, "0")).join("")}`;
    user.focus();
  }
});

// A product image that does not load is hidden rather than shown broken.
document.addEventListener("error", (event) => {
  if (event.target.matches && event.target.matches("img.thumb")) {
    event.target.hidden = true;
  }
}, true);

// After feedback the page opens on the message that says what moved.
window.addEventListener("DOMContentLoaded", () => {
  const notice = document.getElementById("sent-notice");
  if (notice) {
    notice.setAttribute("tabindex", "-1");
    notice.focus();
  }
});
