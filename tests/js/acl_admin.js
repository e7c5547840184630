// kafkajs admin ACL driver for tests/security/test_acl_api.py.
//
//   node acl_admin.js '{"brokers": [...], "username": "...", "password": "...",
//                       "topic": "...", "principal": "User:..."}'
//
// Creates a LITERAL ALLOW READ ACL on the topic for the principal, lists the topic's
// ACLs, deletes them and lists again; prints one JSON line:
// {"described": [[principal, operation, permission]], "deleted": n, "left": n}
// or, on failure, {"error": <kafkajs error name>, "type": <Kafka error type>}.
'use strict'

const {
  Kafka,
  logLevel,
  AclResourceTypes,
  AclOperationTypes,
  AclPermissionTypes,
  ResourcePatternTypes,
} = require('kafkajs')

async function main() {
  const spec = JSON.parse(process.argv[2])
  const kafka = new Kafka({
    clientId: 'ailurus-acl-test',
    brokers: spec.brokers,
    logLevel: logLevel.NOTHING,
    retry: { retries: 0 },
    sasl: { mechanism: 'scram-sha-256', username: spec.username, password: spec.password },
  })
  const admin = kafka.admin()
  await admin.connect()
  try {
    await admin.createAcls({
      acl: [{
        resourceType: AclResourceTypes.TOPIC,
        resourceName: spec.topic,
        resourcePatternType: ResourcePatternTypes.LITERAL,
        principal: spec.principal,
        host: '*',
        operation: AclOperationTypes.READ,
        permissionType: AclPermissionTypes.ALLOW,
      }],
    })
    const filter = {
      resourceType: AclResourceTypes.TOPIC,
      resourceName: spec.topic,
      resourcePatternType: ResourcePatternTypes.ANY,
      principal: spec.principal,
      host: '*',
      operation: AclOperationTypes.ANY,
      permissionType: AclPermissionTypes.ANY,
    }
    const described = await admin.describeAcls(filter)
    const rows = []
    for (const r of described.resources) {
      for (const a of r.acls) rows.push([a.principal, a.operation, a.permissionType])
    }
    const deleted = await admin.deleteAcls({ filters: [filter] })
    const count = deleted.filterResponses.reduce((n, f) => n + f.matchingAcls.length, 0)
    const left = await admin.describeAcls(filter)
    process.stdout.write(JSON.stringify({ described: rows, deleted: count, left: left.resources.length }) + '\n')
  } finally {
    await admin.disconnect()
  }
}

main().then(() => process.exit(0)).catch((e) => {
  process.stdout.write(JSON.stringify({ error: e.name, type: e.type || null, message: e.message }) + '\n')
  process.exit(0)
})
