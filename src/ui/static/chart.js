/**
 * @module A small SVG line chart for the dashboard: time on x, one or more series on y, an axis label
 * for the top value and the zero line. No dependencies; a few hundred points render in well under a
 * millisecond.
 */

const SVG = 'http://www.w3.org/2000/svg';

function node(name, attributes) {
  const element = document.createElementNS(SVG, name);
  for (const [key, value] of Object.entries(attributes)) element.setAttribute(key, String(value));
  return element;
}

/** A "nice" upper bound for the y axis: 1, 2 or 5 times a power of ten. */
export function niceMax(value) {
  if (!(value > 0)) return 1;
  const power = 10 ** Math.floor(Math.log10(value));
  for (const step of [1, 2, 5, 10]) if (value <= step * power) return step * power;
  return 10 * power;
}

function formatValue(value) {
  if (value >= 100) return value.toFixed(0);
  if (value >= 10) return value.toFixed(1);
  return value.toFixed(2).replace(/\.?0+$/, '') || '0';
}

/**
 * Draws `series` ([{ name, color, values: (number|null)[] }], one value per point of `times`) into
 * `container`, replacing what was there. Null values leave gaps.
 */
export function lineChart(container, times, series, options = {}) {
  const width = options.width ?? 600;
  const height = options.height ?? 120;
  const pad = options.compact ? 1 : 18;
  let top = 0;
  for (const line of series) for (const value of line.values) if (value !== null && value > top) top = value;
  top = niceMax(top);
  const svg = node('svg', {
    viewBox: `0 0 ${width} ${height}`,
    preserveAspectRatio: 'none',
    role: 'img',
    'aria-label': options.label ?? series.map((line) => line.name).join(', '),
  });
  const x = (index) => pad + (index / Math.max(1, times.length - 1)) * (width - pad - 2);
  const y = (value) => height - pad - (value / top) * (height - 2 * pad);
  if (!options.compact) {
    svg.append(
      node('line', {
        x1: pad,
        x2: width - 2,
        y1: y(0),
        y2: y(0),
        stroke: 'currentColor',
        'stroke-opacity': 0.2,
      }),
    );
    svg.append(
      node('line', {
        x1: pad,
        x2: width - 2,
        y1: y(top),
        y2: y(top),
        stroke: 'currentColor',
        'stroke-opacity': 0.08,
      }),
    );
    const label = node('text', {
      x: pad + 2,
      y: y(top) - 4,
      'font-size': 10,
      fill: 'currentColor',
      'fill-opacity': 0.6,
    });
    label.textContent = formatValue(top);
    svg.append(label);
  }
  for (const line of series) {
    let path = '';
    let pen = false;
    line.values.forEach((value, index) => {
      if (value === null || value === undefined) {
        pen = false;
        return;
      }
      path += `${pen ? 'L' : 'M'}${x(index).toFixed(1)},${y(value).toFixed(1)}`;
      // A point with no neighbour would draw nothing as a line: mark it with a dot.
      const before = line.values[index - 1];
      const after = line.values[index + 1];
      if ((before === null || before === undefined) && (after === null || after === undefined))
        svg.append(node('circle', { cx: x(index), cy: y(value), r: 2.5, fill: line.color }));
      pen = true;
    });
    if (path === '') continue;
    svg.append(
      node('path', {
        d: path,
        fill: 'none',
        stroke: line.color,
        'stroke-width': options.compact ? 1.5 : 2,
        'vector-effect': 'non-scaling-stroke',
        'stroke-linejoin': 'round',
      }),
    );
  }
  if (!options.compact && series.length > 1) {
    series.forEach((line, index) => {
      const key = node('text', {
        x: width - 8 - (series.length - 1 - index) * 60,
        y: 12,
        'font-size': 10,
        fill: line.color,
        'text-anchor': 'end',
      });
      key.textContent = line.name;
      svg.append(key);
    });
  }
  container.replaceChildren(svg);
}
