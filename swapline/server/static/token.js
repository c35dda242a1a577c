// The access token of a server that is not on loopback, shared by the pages.
// Open a page once as http://host:port/?token=SECRET (the server then sets a same-site cookie)
// or …/#token=SECRET; the page keeps the token for this tab and sends it with its own requests.
(function readToken() {
  const fromQuery = new URLSearchParams(location.search).get("token");
  const fromHash = /(?:^#|&)token=([^&]+)/.exec(location.hash);
  const value = fromQuery || (fromHash && decodeURIComponent(fromHash[1]));
  if (value) {
    sessionStorage.setItem("swaplineToken", value);
    history.replaceState(null, "", location.pathname);
  }
})();

export const token = () => sessionStorage.getItem("swaplineToken");
export const authHeaders = () => (token() ? { Authorization: `Bearer ${token()}` } : {});
export const withToken = (url) =>
  (token() ? `${url}${url.includes("?") ? "&" : "?"}token=${encodeURIComponent(token())}` : url);
