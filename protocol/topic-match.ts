/**
 * MQTT topic-filter matching, shared by everything that enforces a lease policy: the gateway's
 * broker (daemon/transports/mqtt/topics.ts re-exports it) and the reference backend's telemetry
 * check. Pure.
 */

/**
 * MQTT 3.1.1 §4.7: does `filter` match topic name `topic`? `+` matches one level, `#` any
 * number including the parent ([MQTT-4.7.1-2]); a filter starting with a wildcard does not
 * match a `$` topic ([MQTT-4.7.2-1]).
 */
export function topicMatches(filter: string, topic: string): boolean {
  if (topic.startsWith('$') && (filter.startsWith('+') || filter.startsWith('#'))) return false;
  const f = filter.split('/');
  const t = topic.split('/');
  for (let i = 0; i < f.length; i++) {
    const level = f[i] as string;
    if (level === '#') return true;
    if (i >= t.length) return false;
    if (level !== '+' && level !== t[i]) return false;
  }
  return f.length === t.length;
}

/** Does any of `filters` match `topic`? */
export function anyTopicMatches(filters: readonly string[], topic: string): boolean {
  return filters.some((f) => topicMatches(f, topic));
}
