// Whether a connection string is one the driver can use, checked before it is handed to
// postgres.js: the driver's own parse error (Node's ERR_INVALID_URL) carries the whole
// URL, password included, in its `input` property, which util.inspect and console.error print.

/**
 * What is wrong with `url` as a database URL (a phrase to follow "databaseUrl "), or
 * undefined when postgres.js will accept it. Never quotes the URL: see redactUrl.
 */
export function databaseUrlProblem(url: string): string | undefined {
  if (!/^postgres(ql)?:\/\//.test(url)) return "must be a postgres:// or postgresql:// URL";
  // As postgres.js reads it (parseUrl in postgres/src/index.js): the hosts run from the
  // first "@" to the first "/" or "?", and the URL with only the first host must parse.
  let hosts: string;
  try {
    hosts = url.slice(url.indexOf("://") + 3).split(/[?/]/)[0]!;
    hosts = decodeURIComponent(hosts.slice(hosts.indexOf("@") + 1));
    const parsed = new URL(url.replace(hosts, hosts.split(",")[0]!));
    decodeURIComponent(parsed.username);
    decodeURIComponent(parsed.password);
  } catch {
    return "is not a valid URL (percent-encode / ? # @ : % in the user name and password, e.g. @ as %40)";
  }
  // With several hosts, the driver takes what follows the first "@" for the host list: an
  // unencoded "@" in the password would send part of it to DNS, and into error messages.
  if (hosts.includes(",") && hosts.includes("@")) {
    return 'has several hosts and an unencoded "@" in its user name or password (write it %40)';
  }
  // Two raw "@", the last one after a "/", "?" or "#": a password holding "@" and "/"
  // unencoded, read as a host (part of the password then goes to DNS, and into the error:
  // "ENOTFOUND <part of it>").
  const afterScheme = url.indexOf("://") + 3;
  const firstDelimiter = url.slice(afterScheme).search(/[/?#]/);
  if (url.split("@").length > 2 && firstDelimiter >= 0 && url.lastIndexOf("@") > afterScheme + firstDelimiter) {
    return 'has an "@" after a "/", "?" or "#": percent-encode / ? # @ in the user name and password (e.g. @ as %40)';
  }
  // postgres.js splits hosts at ":" for the port: "[::1]" becomes the host "[", which no
  // connection ever reaches.
  if (hosts.includes("[")) return "has an IPv6 address in brackets, which the driver cannot read: use a host name";
  return undefined;
}
