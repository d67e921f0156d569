/** @module How the Lambda Invoke API reads a FunctionName and a SigV4 credential scope. */

import { describe, expect, it } from 'vitest';
import { LambdaApiError, mapSigV4Credentials, parseLambdaFunctionName } from './lambda-invoke.js';

describe('parseLambdaFunctionName', () => {
  it.each([
    ['add', undefined, { namespace: 'default', name: 'add' }, undefined, undefined, undefined],
    ['add.team', undefined, { namespace: 'team', name: 'add' }, undefined, undefined, undefined],
    ['add:%24LATEST', undefined, { namespace: 'default', name: 'add' }, '$LATEST', undefined, undefined],
    ['add', '3', { namespace: 'default', name: 'add' }, '3', undefined, undefined],
    [
      '123456789012%3Afunction%3Aadd',
      undefined,
      { namespace: 'default', name: 'add' },
      undefined,
      undefined,
      '123456789012',
    ],
    [
      'arn:aws:lambda:eu-west-1:123456789012:function:add.team:live',
      undefined,
      { namespace: 'team', name: 'add' },
      'live',
      'eu-west-1',
      '123456789012',
    ],
  ])('%s (?Qualifier=%s)', (encoded, query, ref, qualifier, region, account) => {
    expect(parseLambdaFunctionName(encoded, query)).toEqual({ ref, qualifier, region, account });
  });

  it('refuses a name that is no function name or ARN, and qualifiers that disagree', () => {
    expect(() => parseLambdaFunctionName('a b', undefined)).toThrow(/at 'functionName' failed/);
    const clash = (() => {
      try {
        parseLambdaFunctionName('add:1', '2');
      } catch (error) {
        return error;
      }
    })();
    expect(clash).toBeInstanceOf(LambdaApiError);
    expect(clash).toMatchObject({ status: 400, type: 'InvalidParameterValueException' });
  });
});

describe('mapSigV4Credentials', () => {
  it('reads the access key id and region of the credential scope, and checks nothing yet', () => {
    const authorization =
      'AWS4-HMAC-SHA256 Credential=AKID123/20261206/eu-central-1/lambda/aws4_request, SignedHeaders=host;x-amz-date, Signature=abc';
    expect(mapSigV4Credentials(['Host', 'h', 'Authorization', authorization])).toEqual({
      accessKeyId: 'AKID123',
      region: 'eu-central-1',
    });
    expect(mapSigV4Credentials([])).toEqual({ accessKeyId: undefined, region: undefined });
  });
});
