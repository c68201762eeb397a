// ESM entry: the same functions as the CommonJS one (one implementation, so `import` and
// `require` in one app load the same file).
import cjs from "./index.js";

export const { getLoadablePath, load } = cjs;
export default cjs;
