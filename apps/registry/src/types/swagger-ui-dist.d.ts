// swagger-ui-dist ships no types. Only this entry is used: the package's own directory,
// without loading the multi-megabyte browser bundle its index.js requires.
declare module 'swagger-ui-dist/absolute-path.js' {
  export default function getAbsoluteFSPath(): string;
}
