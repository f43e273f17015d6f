// Validates recorded answers of a running ingest against the OpenAPI document with Ajv (JSON
// Schema 2020-12), independently of the Go tests' kin-openapi.
import Ajv2020 from "ajv/dist/2020.js";
import addFormats from "ajv-formats";
import { load } from "js-yaml";
const yaml = { load };
import fs from "node:fs";
const doc = yaml.load(fs.readFileSync(process.argv[2], "utf8"));
const ajv = new Ajv2020({ strict: false, allErrors: true });
addFormats(ajv);
ajv.addSchema({ $id: "doc", components: doc.components });
const fix = (s) => JSON.parse(JSON.stringify(s).replaceAll('"#/components/', '"doc#/components/'));
const deref = (o) => (o && o.$ref ? deref(o.$ref.split("/").slice(1).reduce((a, k) => a[k], doc)) : o);
let bad = 0;
for (const line of fs.readFileSync(process.argv[3], "utf8").trim().split("\n")) {
  const x = JSON.parse(line);
  const op = doc.paths[x.path]?.[x.method.toLowerCase()];
  const resp = deref(op?.responses?.[String(x.status)]);
  let verdict = "ok";
  if (!op && doc.paths[x.path] && x.status === 405) {
    // A method the path does not have: OpenAPI has no operation to describe it on; the
    // document's description says it answers an Error (method_not_allowed).
    const v = ajv.compile(fix({ $ref: "#/components/schemas/Error" }));
    verdict = v(JSON.parse(x.body)) && JSON.parse(x.body).error === "method_not_allowed" ? "ok (an Error, as the description says)" : JSON.stringify(v.errors);
  } else if (!op) verdict = "no such operation";
  else if (!resp) verdict = `status ${x.status} not documented`;
  else if (resp.content) {
    const media = Object.keys(resp.content)[0];
    if (!x.contentType.startsWith(media)) verdict = `content type ${x.contentType}, documented ${media}`;
    else if (media === "application/json") {
      const v = ajv.compile(fix(resp.content[media].schema));
      if (!v(JSON.parse(x.body))) verdict = JSON.stringify(v.errors);
    }
  }
  if (!verdict.startsWith("ok")) bad++;
  console.log(`${x.status} ${x.method} ${x.path}: ${verdict}`);
}
console.log(bad === 0 ? "all valid" : `${bad} invalid`);
process.exit(bad ? 1 : 0);
