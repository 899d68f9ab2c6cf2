// The window/level preview while dragging: an SVG filter applied to the shown image.

/**
 * An SVG filter that turns the shown image, rendered with one window, into an estimate of
 * another: the server's image replaces it once rendered, so dragging feels immediate.
 */
export function windowPreview() {
  const NS = 'http://www.w3.org/2000/svg';
  const svg = document.createElementNS(NS, 'svg');
  svg.setAttribute('class', 'wl-filter');
  svg.setAttribute('aria-hidden', 'true');
  const filter = document.createElementNS(NS, 'filter');
  filter.setAttribute('id', 'wl-preview');
  filter.setAttribute('color-interpolation-filters', 'sRGB');
  const transfer = document.createElementNS(NS, 'feComponentTransfer');
  const funcs = ['feFuncR', 'feFuncG', 'feFuncB'].map((name) => {
    const f = document.createElementNS(NS, name);
    f.setAttribute('type', 'linear');
    transfer.append(f);
    return f;
  });
  filter.append(transfer);
  svg.append(filter);
  return {
    svg,
    /** Sets the filter for shown → wanted; answers the CSS filter value. */
    set(shown, wanted) {
      // A grey level p of the shown image stands for v = low0 + p·W0; in the wanted window
      // that is (v − low1) / W1.
      const slope = shown.width / wanted.width;
      const intercept = ((shown.center - shown.width / 2) - (wanted.center - wanted.width / 2)) / wanted.width;
      for (const f of funcs) {
        f.setAttribute('slope', String(slope));
        f.setAttribute('intercept', String(intercept));
      }
      return 'url(#wl-preview)';
    },
  };
}
