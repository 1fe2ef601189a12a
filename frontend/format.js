// Number and date formatting shared by the panels; units are always spelled out.
const integer = new Intl.NumberFormat(undefined, { maximumFractionDigits: 0 });
const decimal = new Intl.NumberFormat(undefined, { maximumFractionDigits: 2 });

export const count = (n) => integer.format(n);

/** Milliseconds with a precision that suits the size: 0.042 ms, 3.4 ms, 120 ms. */
export function ms(value) {
  const digits = value < 1 ? 3 : value < 10 ? 2 : value < 100 ? 1 : 0;
  return `${value.toFixed(digits)} ms`;
}

export const percent = (ratio) => `${(ratio * 100).toFixed(1)}%`;

export const perRun = (n) => decimal.format(n);

export function bytes(n) {
  const units = ['B', 'KiB', 'MiB', 'GiB'];
  let value = n;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${decimal.format(value)} ${units[unit]}`;
}

export const dateTime = (iso) => new Date(iso).toLocaleString();
