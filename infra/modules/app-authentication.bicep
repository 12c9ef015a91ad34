// authMode 'entra': App Service authentication ("Easy Auth", Microsoft.Web/sites/config 'authsettingsV2') in front of
// the function app. Every request must carry a Microsoft Entra access token issued for the migrator's app
// registration; one without is answered 401 before it reaches the Functions host or the handler. The handler then
// authorizes by app role (Migration.Read, Migration.Operate) from the X-MS-CLIENT-PRINCIPAL header the platform adds
// (Microsoft Learn, "Configure your App Service or Azure Functions app to use Microsoft Entra sign-in": "By default,
// App Service authentication handles only authentication"; "The injected x-ms-client-principal header contains a
// Base64-encoded JSON object with the claims asserted about the caller").
//
// The app registration is not created here: Bicep can only create one through the Microsoft Graph Bicep extension,
// whose deployments need Microsoft Graph permissions on top of Azure ones (Microsoft Learn, "Permissions and
// privileges for Microsoft Graph Bicep template deployments") that a locked-down tenant rarely gives the person who
// runs azd, and which run in the public cloud only ("Microsoft Graph Bicep feature limitations"). It is made once by
// someone who may (az commands in the docs section "Deploying into a locked-down tenant"); its client id comes in.
@description('Name of the function app.')
param siteName string
@description('Application (client) id of the migrator\'s Entra app registration (AUTH_CLIENT_ID): a GUID, required with authMode entra.')
@minLength(36)
@maxLength(36)
param authClientId string
@description('Tenant of the app registration.')
param authTenantId string

resource site 'Microsoft.Web/sites@2024-04-01' existing = {
  name: siteName
}

// Schema: Microsoft.Web/sites/config@2024-04-01, name 'authsettingsV2' (SiteAuthSettingsV2Properties; bicep-types-az
// generated/web/microsoft.web/2024-04-01/types.json).
resource authSettings 'Microsoft.Web/sites/config@2024-04-01' = {
  parent: site
  name: 'authsettingsV2'
  properties: {
    platform: {
      enabled: true
    }
    globalValidation: {
      requireAuthentication: true
      // "HTTP 401 Unauthorized: recommended for APIs" (same article, Configure authentication settings).
      unauthenticatedClientAction: 'Return401'
    }
    httpSettings: {
      requireHttps: true
    }
    identityProviders: {
      azureActiveDirectory: {
        enabled: true
        registration: {
          clientId: authClientId
          // "Issuer URL. This URL takes the form <authentication-endpoint>/<tenant-id>/v2.0 ... a workforce tenant in
          // global Azure would use https://sts.windows.net as its authentication endpoint" (same article).
          openIdIssuer: 'https://sts.windows.net/${authTenantId}/v2.0'
        }
        validation: {
          // Tokens for the API: its application ID URI (v1 access tokens, the default, carry it as aud) and its
          // client id (v2 access tokens). "For a single-tenant app, you can use the default value, which is in the
          // form api://<application-client-id>" (same article, Expose an API).
          allowedAudiences: [
            'api://${authClientId}'
            authClientId
          ]
        }
      }
    }
    login: {
      // An API answering bearer tokens: nothing to store.
      tokenStore: {
        enabled: false
      }
    }
  }
}
