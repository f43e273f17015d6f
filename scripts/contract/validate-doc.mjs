// Validates an OpenAPI document with @seriousme/openapi-schema-validator (not the Go tests'
// kin-openapi); exits 1 when it is not valid.
import { Validator } from "@seriousme/openapi-schema-validator";
import fs from "node:fs";
const v = new Validator();
const res = await v.validate(fs.readFileSync(process.argv[2], "utf8"));
console.log(res.valid ? `contract: the document is valid OpenAPI ${v.version}` : JSON.stringify(res.errors, null, 1));
process.exit(res.valid ? 0 : 1);
