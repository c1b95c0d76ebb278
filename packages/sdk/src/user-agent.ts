/**
 * The browser family of a User-Agent string, for routing ("20% of Chrome requests"). Looks
 * at the first 512 characters only; order matters because Edge and Opera also say Chrome,
 * and Chrome also says Safari.
 */
export function userAgentFamily(userAgent: string): string {
  const ua = userAgent.slice(0, 512);
  if (ua.includes('Edg/') || ua.includes('EdgA/') || ua.includes('EdgiOS/')) return 'Edge';
  if (ua.includes('OPR/') || ua.includes('Opera')) return 'Opera';
  if (ua.includes('Firefox/') || ua.includes('FxiOS/')) return 'Firefox';
  if (ua.includes('Chrome/') || ua.includes('CriOS/') || ua.includes('Chromium/')) return 'Chrome';
  if (ua.includes('Safari/')) return 'Safari';
  if (ua.startsWith('curl/')) return 'curl';
  return 'Other';
}
