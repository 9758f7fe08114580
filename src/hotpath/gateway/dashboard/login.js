"use strict";
// The admin key goes once in an Authorization header (never in the URL); the
// answer sets the HttpOnly session cookie, and the page then reloads with it.
document.getElementById("login").addEventListener("submit", async (event) => {
  event.preventDefault();
  const key = document.getElementById("key").value.trim();
  const note = document.getElementById("note");
  if (!key) return;
  try {
    const answer = await fetch("dashboard", {
      headers: { authorization: "Bearer " + key },
      credentials: "same-origin",
      cache: "no-store",
    });
    if (answer.ok) {
      location.replace("dashboard");
      return;
    }
    note.textContent = answer.status === 401
      ? "That is not the admin key."
      : "The gateway answered " + answer.status + ".";
  } catch (error) {
    note.textContent = "The gateway cannot be reached.";
  }
});
