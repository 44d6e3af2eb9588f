// The demo's "model": a deterministic fake that answers any prompt with the same
// paragraph, word by word, like a tokenizer's output (each word carries its leading
// space). No network, so the demo and its test run anywhere and always agree.

const PARAGRAPH =
  "Here is how this answer reaches you. A durable workflow writes each token to a stream " +
  "in Postgres, and a trigger sends NOTIFY when the write commits. The web server holds " +
  "one LISTEN connection; when the notification arrives it reads the new entries and sends " +
  "them to your browser as Server-Sent Events, each tagged with its offset. If you reload " +
  "this page, or the connection drops, the browser asks again from the last offset it saw, " +
  "so no token is lost and none is shown twice. Open a second tab on the same address and " +
  "it follows the same stream, live. The progress bars beside this text come from another " +
  "workflow, a backend job that reports its download, process and upload phases with " +
  "writeProgress; a terminal can follow them too, with pgtide progress. Nothing here polls: " +
  "every update you see was pushed by Postgres the moment it was committed.";

/** The answer's tokens: concatenated, they are the exact text the page must show. */
export function fakeAnswer(prompt: string): string[] {
  const words = `You asked: “${prompt.trim()}”. ${PARAGRAPH}`.split(/ +/);
  return words.map((word, i) => (i === 0 ? word : ` ${word}`));
}
